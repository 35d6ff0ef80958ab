"""Tiny random checkpoints of the VLMs dsocr serves, for tests and benches (no download).

Each module of this package builds one model: it defines ``NAME`` (the model's catalog name,
``ipc/catalog.py``) and ``build(folder: Path, **kw) -> Path``, which writes a randomly initialised
checkpoint, processor and tokenizer into ``folder`` (from the small configs of transformers' own
tests) and returns it. Modules are found by :func:`builders`; a new one needs no registration.

    python -m bench.tiny_models deepseek-ocr-2 /tmp/tiny     # builds one, prints its folder
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

TINY = "-tiny"  # bench/batching.py --model NAME-tiny


def builders() -> dict[str, Callable[..., Path]]:
    """Catalog model name -> its ``build``, for every module of the package."""
    found: dict[str, Callable[..., Path]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found[module.NAME] = module.build
    return found


def build(name: str, folder: Path, **kw: Any) -> Path:
    """The tiny ``name`` (a catalog name, with or without ``-tiny``) written into ``folder``."""
    name = name.removesuffix(TINY)
    known = builders()
    if name not in known:
        raise KeyError(f"no tiny builder for {name!r}; there are: {', '.join(sorted(known))}")
    return known[name](Path(folder), **kw)
