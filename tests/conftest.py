"""Suite-wide set-up: no hub access, one model cache per test session, no leaked segments."""

from __future__ import annotations

import os
import tempfile

# Every process the tests start (engines included) inherits these: nothing may reach a hub, and
# converted model files go to a fresh cache so a run never depends on an earlier one.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("DSOCR_CACHE_DIR", tempfile.mkdtemp(prefix="dsocr-test-cache-"))
