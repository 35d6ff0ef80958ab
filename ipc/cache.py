"""Where converted model files are cached: one rule for the adapters and the supervisor's check."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_CACHE_DIR = "~/.cache/dsocr"


class CacheDirError(RuntimeError):
    """The cache directory cannot be used; the message says why and what to do."""


def cache_root(options: dict[str, Any] | None = None) -> Path:
    """``cache_dir`` from the adapter's options, else ``$DSOCR_CACHE_DIR``, else ``~/.cache/dsocr``."""
    root = (options or {}).get("cache_dir") or os.environ.get("DSOCR_CACHE_DIR") or DEFAULT_CACHE_DIR
    return Path(root).expanduser()


def check_cache_dir(path: Path) -> Path:
    """Create ``path`` if needed and prove it writable; :class:`CacheDirError` otherwise."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CacheDirError(f"cache dir {path} exists and is not a directory; set DSOCR_CACHE_DIR") from None
    except OSError as exc:
        raise CacheDirError(f"cache dir {path} cannot be created ({exc.strerror}); set DSOCR_CACHE_DIR") from None
    if not path.is_dir():
        raise CacheDirError(f"cache dir {path} is not a directory; set DSOCR_CACHE_DIR")
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise CacheDirError(f"cache dir {path} is not writable ({exc.strerror}); set DSOCR_CACHE_DIR") from None
    return path
