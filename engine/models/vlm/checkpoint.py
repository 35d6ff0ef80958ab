"""Where a VLM checkpoint lives, and its tensors under the names the engine binds.

``model_path`` is a local folder or a hub id. A hub id is looked up in the local hub cache first
(so ``HF_HUB_OFFLINE=1`` and restores never touch the network), then downloaded. The engine binds
a segment's tensors with ``load_state_dict(strict=True)``, so their names must be the module's
``state_dict()`` keys. A native-format checkpoint (``save_pretrained(save_original_format=False)``)
has exactly those names and is used as it is. One in a model's original layout (DeepSeek-OCR-2's
``sam_model.*``, one tensor per MoE expert: what ``save_pretrained`` writes by default in
transformers 5, through ``transformers/conversion_mapping.py``) is converted once by
``from_pretrained`` and cached as one safetensors file, like the ppocr weights. Every message
starts with the model's name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..base import WeightsUnavailable

log = logging.getLogger("dsocr.engine.vlm")

HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]
CONVERTED = "model.safetensors"


def _hub_cache() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _is_local(model_path: str) -> bool:
    path = Path(model_path).expanduser()
    return path.exists() or model_path.startswith(("/", ".", "~")) or model_path.count("/") != 1


def resolve_folder(model_path: str, name: str, download: bool = True) -> Path:
    """The folder holding config, processor and safetensors for ``model_path`` (folder or hub id)."""
    if _is_local(model_path):
        folder = Path(model_path).expanduser()
        if not folder.is_dir():
            raise WeightsUnavailable(f"{name}: model_path {model_path} is not a folder")
        return folder
    from huggingface_hub import snapshot_download

    try:
        cached = Path(snapshot_download(model_path, allow_patterns=HUB_FILES, local_files_only=True))
        safetensors_files(cached, name)
        return cached
    except Exception as exc:  # not (fully) cached, whatever the hub's error type: try the network
        cached_error = exc
    # the answer names the model id and the settings, never a path (the hub cache is under the
    # server's home directory, issue 20); the server's log keeps the details
    where = f"download it into the hub cache ($HF_HOME) or give a folder: --model-option {name}.model_path=DIR"
    if not download:
        log.warning("%s is not in the hub cache %s: %s", model_path, _hub_cache(), cached_error)
        raise WeightsUnavailable(f"{name}: {model_path} is not in the hub cache; {where}")
    try:
        return Path(snapshot_download(model_path, allow_patterns=HUB_FILES))
    except Exception as exc:
        log.warning("cannot get %s from the hub (cache %s): %s: %s", model_path, _hub_cache(), type(exc).__name__, exc)
        raise WeightsUnavailable(
            f"{name}: cannot get {model_path} from the hub ({type(exc).__name__}) and it is not in "
            f"the hub cache; {where}"
        ) from None


def safetensors_files(folder: Path, name: str = "model") -> list[Path]:
    """The checkpoint's files: those its index names, else every ``*.safetensors`` in the folder."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [folder / name for name in names]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise WeightsUnavailable(f"{name}: {folder} lacks {', '.join(missing)} named by its index")
        return files
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise WeightsUnavailable(f"{name}: no *.safetensors in {folder}")
    return files


def tensor_names(files: list[Path]) -> set[str]:
    names: set[str] = set()
    for path in files:
        with safe_open(str(path), framework="pt") as f:  # reads the header only
            names.update(f.keys())
    return names


def converted_path(cache_root: Path, name: str, folder: Path, files: list[Path]) -> Path:
    """Where the converted copy of ``files`` goes: keyed by the folder and the files' size and date."""
    key = hashlib.sha1(str(folder.resolve()).encode())
    for path in files:
        st = path.stat()
        key.update(f"{path.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return cache_root / name / key.hexdigest()[:16] / CONVERTED


def convert(model_class: Any, name: str, folder: Path, target: Path, expected: set[str], config: Any = None) -> Path:
    """Load ``folder`` with ``model_class`` (transformers' conversion mapping; ``config`` instead of the
    folder's own when given); write its state dict to ``target``."""
    log.info("%s: converting %s to native tensor names in %s", name, folder, target)
    extra = {"config": config} if config is not None else {}
    model, info = model_class.from_pretrained(folder, dtype="auto", output_loading_info=True, **extra)
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    missing = set(info.get("missing_keys", ())) - tied
    if missing or info.get("mismatched_keys"):
        raise WeightsUnavailable(
            f"{name}: {folder} does not hold every tensor the model needs "
            f"(missing {sorted(missing)[:5]}, mismatched {info.get('mismatched_keys', [])[:5]})"
        )
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().contiguous()
        if tensor.data_ptr() in seen:  # a tied weight: safetensors wants a tensor per name
            tensor = tensor.clone()
        seen.add(tensor.data_ptr())
        tensors[name] = tensor
    if set(tensors) != expected:
        raise WeightsUnavailable(f"{name}: converting {folder} gave other tensor names than the model's")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    save_file(tensors, str(tmp), metadata={"format": "pt", "source": str(folder)})
    os.replace(tmp, target)
    return target
