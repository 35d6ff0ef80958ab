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
# Many engines run at once in the suite on a 2-core machine: one torch thread each keeps an
# inference at ~0.1 s instead of swinging to seconds when OpenMP workers fight for the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DSOCR_ENGINE_THREADS", "1")
if "DSOCR_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="dsocr-test-cache-")
    os.environ["DSOCR_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)


def pytest_report_header() -> str:
    """The browser and the other system tools this run drives, next to the versions the suite passed
    with (``make test`` runs pytest with -q, which hides this header, and prints the same line first)."""
    from tests.tool_versions import summary

    return summary()
