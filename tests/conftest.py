"""Suite-wide set-up: no hub access, one model cache per test session, removed at the end."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Every process the tests start (engines included) inherits these: nothing may reach a hub, and
# converted model files go to a fresh cache so a run never depends on an earlier one.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
if "DSOCR_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="dsocr-test-cache-")
    os.environ["DSOCR_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
