"""What the tiny-VLM adapter tests share: a tiny checkpoint bound the way the engine binds one
(segment, placement, meta skeleton, strict assign, ``after_bind``), pages, and the checks every
VLM adapter must pass whatever its model."""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from bench import tiny_models
from engine import placement
from engine.models import create_adapter
from engine.models.base import BadInput, Unsupported
from ipc.catalog import model_info
from ipc.weights import WeightStore, unlink_segment

CPU = torch.device("cpu")
SAME_KEYS = ("text", "raw_text", "lines", "boxes", "finish_reason", "usage")


def page(width: int = 180, height: int = 120, text: str = "Invoice 2041 total 385.20") -> np.ndarray:
    img = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(img).text((10, 10), text, fill="black")
    return np.asarray(img)


def build_tiny(model: str, folder: Path) -> Path:
    return tiny_models.build(model, folder)


@contextmanager
def bound(model: str, folder: Path, **options: Any) -> Iterator[tuple[Any, torch.nn.Module]]:
    adapter = create_adapter(model, {"model_path": str(folder), "max_new_tokens": 10, **options})
    name = f"dsocr_{os.getpid()}_test-{model}-{time.monotonic_ns()}"
    WeightStore.from_safetensors(name, adapter.weight_files()).close()
    store = WeightStore.attach(name)
    try:
        placed = placement.place(store, CPU)
        placement.cast_floating(placed, adapter.dtype_for(CPU))
        module = adapter.build_skeleton()
        assert all(t.is_meta for t in module.state_dict().values())
        module.load_state_dict(placed.tensors, strict=True, assign=True)
        module.requires_grad_(False)
        adapter.after_bind(module, CPU)
        yield adapter, module
    finally:  # the module's tensors are views of the mapping: unlink, leave the unmapping to the exit
        unlink_segment(name)


def requests_for(adapter: Any) -> list[dict[str, str]]:
    """One request per prompt type the catalog lists (custom ones with a prompt), one with a token limit."""
    info = model_info(adapter.name)
    out = [{"prompt_type": t, **({"custom_prompt": "Read the total"} if t in info.custom_prompt else {})}
           for t in info.prompt_types]  # fmt: skip
    return [*out, {"prompt_type": "free", "max_tokens": "3"}]


def check_prompt_types_answer_and_batch_as_alone(adapter: Any, module: torch.nn.Module) -> None:
    requests = requests_for(adapter)
    pages = [page(180 + 40 * (i % 3), 120 + 60 * (i % 2)) for i in range(len(requests))]
    alone = [adapter.infer(module, p, o, CPU) for p, o in zip(pages, requests)]
    batch = adapter.infer_batch(module, pages, requests, CPU)
    for options, one, row in zip(requests, alone, batch):
        assert not isinstance(row, Exception), (options, row)
        assert {k: one[k] for k in SAME_KEYS} == {k: row[k] for k in SAME_KEYS}, options
        assert one["finish_reason"] in ("stop", "length", "repetition")
        assert one["usage"]["total_tokens"] == one["usage"]["prompt_tokens"] + one["usage"]["completion_tokens"]
    assert alone[-1]["usage"]["completion_tokens"] <= 3
    # each answer was prompted with its type's official instruction, inside the chat template
    prompts = importlib.import_module(f"engine.models.{adapter.name.replace('-', '_')}.prompts").PROMPTS
    for options, one in zip(requests, alone):
        instruction = prompts.instructions[options["prompt_type"]] or options["custom_prompt"]
        assert instruction in one["prompt"] and one["prompt"] != instruction, options


def check_requests_fail_alone(adapter: Any, module: torch.nn.Module) -> None:
    info = model_info(adapter.name)
    rows = adapter.infer_batch(
        module, [page(), page(), page()], [{"prompt_type": "poem"}, {}, {"max_tokens": "x"}], CPU
    )
    assert isinstance(rows[0], Unsupported) and all(t in str(rows[0]) for t in info.prompt_types)
    assert not isinstance(rows[1], Exception)
    assert isinstance(rows[2], BadInput)
    # no prompt type: the model's document task
    default = adapter.infer(module, page(), {}, CPU)
    assert default["prompt"] == adapter.infer(module, page(), {"prompt_type": "document"}, CPU)["prompt"]
    assert info.default_prompt_type == "document"
    for custom in info.custom_prompt:
        with pytest.raises(BadInput, match="custom_prompt"):
            adapter.infer(module, page(), {"prompt_type": custom}, CPU)
        special = adapter.processor.tokenizer.eos_token
        with pytest.raises(BadInput, match="special token"):
            adapter.infer(module, page(), {"prompt_type": custom, "custom_prompt": f"read {special} this"}, CPU)


def check_catalog(adapter: Any) -> None:
    assert adapter.prompt_types == model_info(adapter.name).prompt_types
    prompts = importlib.import_module(f"engine.models.{adapter.name.replace('-', '_')}.prompts").PROMPTS
    assert tuple(prompts.instructions) == adapter.prompt_types  # the instruction table, in the catalog's order


def check_original_layout_converts_once_and_answers_the_same(model: str, folder: Path, tmp: Path) -> None:
    """A checkpoint under the model's original tensor names (as the hub has it) is converted once
    into the cache and answers exactly what the native one does."""
    original = tiny_models.build(model, tmp / "original", native=False)
    answers = []
    for path in (folder, original):
        with bound(model, path, cache_dir=str(tmp / "cache")) as (adapter, module):
            answers.append(adapter.infer(module, page(), {"prompt_type": "free"}, CPU)["raw_text"])
            files = adapter.weight_files()
    assert files[0].is_relative_to(tmp / "cache")  # the original layout was converted
    assert answers[0] == answers[1]
