"""The deepseek-ocr-2 adapter in-process, on a tiny random model: weights, binding, prompts, decoding."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from engine import placement
from engine.models import create_adapter
from engine.models.base import BadInput, Unsupported, WeightsUnavailable
from engine.models.deepseek_ocr2 import DeepseekOcr2Adapter
from engine.models.deepseek_ocr2.prompts import build_prompt
from engine.models.vlm import checkpoint
from ipc.weights import WeightStore, unlink_segment
from tests.tiny_deepseek import build_tiny

CPU = torch.device("cpu")
pytestmark = pytest.mark.timeout(120)


def page(width: int = 180, height: int = 120) -> np.ndarray:
    img = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(img).text((10, 10), "Invoice 2041 total 385.20", fill="black")
    return np.asarray(img)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("tiny-deepseek"))


def bind(adapter: DeepseekOcr2Adapter, files: list[Path]) -> tuple[torch.nn.Module, WeightStore]:
    """What the engine does on a load: segment, placement, skeleton, strict assign, after_bind."""
    name = f"dsocr_{os.getpid()}_test-deepseek-{time.monotonic_ns()}"
    WeightStore.from_safetensors(name, files).close()
    store = WeightStore.attach(name)
    placed = placement.place(store, CPU)
    placement.cast_floating(placed, adapter.dtype_for(CPU))
    module = adapter.build_skeleton()
    assert all(t.is_meta for t in module.state_dict().values())
    module.load_state_dict(placed.tensors, strict=True, assign=True)
    module.requires_grad_(False)
    adapter.after_bind(module, CPU)
    return module, store


@pytest.fixture(scope="module")
def bound(tiny: Path):
    adapter = create_adapter("deepseek-ocr-2", {"model_path": str(tiny), "max_new_tokens": 12})
    module, store = bind(adapter, adapter.weight_files())
    yield adapter, module
    del module
    unlink_segment(store.name)


def test_native_checkpoint_names_are_the_state_dict_keys(tiny: Path) -> None:
    adapter = DeepseekOcr2Adapter({"model_path": str(tiny), "cache_dir": str(tiny / "no-cache")})
    files = adapter.weight_files()
    assert files == [tiny / "model.safetensors"]  # bound as it is: no conversion
    assert checkpoint.tensor_names(files) == set(adapter.build_skeleton().state_dict())
    assert not (tiny / "no-cache").exists()


@pytest.mark.parametrize("tie", [False, True])
def test_original_layout_is_converted_once(tmp_path: Path, tie: bool) -> None:
    folder = build_tiny(tmp_path / "orig", native=False, tie=tie)
    options = {"model_path": str(folder), "cache_dir": str(tmp_path / "cache"), "max_new_tokens": 12}
    adapter = DeepseekOcr2Adapter(options)
    assert checkpoint.tensor_names(checkpoint.safetensors_files(folder)) != set(adapter.build_skeleton().state_dict())
    (converted,) = adapter.weight_files()
    assert converted.is_relative_to(tmp_path / "cache")
    stamp = converted.stat().st_mtime_ns
    assert DeepseekOcr2Adapter(adapter.options).weight_files() == [converted]
    assert converted.stat().st_mtime_ns == stamp  # cached, not converted again
    module, store = bind(adapter, [converted])
    try:
        embed = module.model.language_model.embed_tokens.weight
        assert (module.lm_head.weight is embed) == tie
        result = adapter.infer(module, page(), {"prompt_type": "free"}, CPU)
        assert result["usage"]["completion_tokens"] > 0
    finally:
        del module
        unlink_segment(store.name)


def test_raw_upstream_folder_is_converted_once_and_answers_as_the_native_one(bound, tmp_path: Path) -> None:
    """deepseek-ai/DeepSeek-OCR-2's own layout: deepseek_vl_v2 config, upstream tensor names, its
    processor_config.json and no preprocessor_config.json. The same weights as ``tiny`` (seed 0)."""
    native, native_module = bound
    raw = build_tiny(tmp_path / "raw", layout="upstream")
    assert '"deepseek_vl_v2"' in (raw / "config.json").read_text() and not (raw / "preprocessor_config.json").exists()
    options = {"model_path": str(raw), "cache_dir": str(tmp_path / "cache"), "max_new_tokens": 12}
    adapter = DeepseekOcr2Adapter(options)
    (weights,) = adapter.weight_files()
    assert weights.is_relative_to(tmp_path / "cache") and weights.parent == adapter.folder()
    stamp = weights.stat().st_mtime_ns
    assert DeepseekOcr2Adapter(options).weight_files() == [weights] and weights.stat().st_mtime_ns == stamp
    module, store = bind(adapter, [weights])
    try:
        for options in ({"prompt_type": "free"}, {"prompt_type": "document"}):
            assert adapter.infer(module, page(500, 200), options, CPU) == native.infer(
                native_module, page(500, 200), options, CPU
            )  # the same config, processor (tiles included) and weights as the native folder
    finally:
        del module
        unlink_segment(store.name)


def test_bound_model_has_no_meta_tensors_and_matches_from_pretrained(bound, tiny: Path) -> None:
    from transformers import DeepseekOcr2ForConditionalGeneration

    adapter, module = bound
    assert not [n for n, t in (*module.named_parameters(), *module.named_buffers()) if t.is_meta]
    reference = DeepseekOcr2ForConditionalGeneration.from_pretrained(tiny).eval()
    ours = dict(module.named_buffers())
    for name, buffer in reference.named_buffers():  # the recomputed rotary tables
        torch.testing.assert_close(ours[name], buffer, rtol=0, atol=0)
    assert module.lm_head.weight is not module.model.language_model.embed_tokens.weight

    image = page(400, 150)  # wider than a tile: the global view plus local crops
    result = adapter.infer(module, image, {"prompt_type": "free"}, CPU)
    inputs = adapter.processor(images=Image.fromarray(image), text=result["prompt"], return_tensors="pt")
    assert int(inputs["num_local_patches"][0]) >= 2
    with torch.inference_mode():
        expected = reference.generate(**inputs, do_sample=False, max_new_tokens=12)
    expected_ids = expected[0, inputs["input_ids"].shape[1] :].tolist()
    assert result["usage"]["completion_tokens"] == len(expected_ids)
    eos = adapter.processor.tokenizer.eos_token_id
    assert result["raw_text"] == adapter.processor.tokenizer.decode([t for t in expected_ids if t != eos])


def test_infer_returns_real_tokens_for_every_prompt_type(bound) -> None:
    adapter, module = bound
    vocab = set(adapter.processor.tokenizer.get_vocab())
    image = page()
    for options in (
        {"prompt_type": "document"},
        {"prompt_type": "ocr"},
        {"prompt_type": "free"},
        {"prompt_type": "figure"},
        {"prompt_type": "describe"},
        {"prompt_type": "find", "find_term": "Invoice"},
        {"prompt_type": "freeform", "custom_prompt": "Read the total."},
    ):
        t0 = time.perf_counter()
        result = adapter.infer(module, image, options, CPU)
        assert time.perf_counter() - t0 < 10
        assert set(result) >= {"text", "raw_text", "lines", "boxes"}
        assert 0 < result["usage"]["completion_tokens"] <= 12
        assert result["finish_reason"] in ("stop", "length", "repetition")
        assert result["raw_text"] and all(word in vocab for word in result["raw_text"].split())
        assert result["prompt"].startswith("<image>\n")
        # 256 global tokens + separator: the 180 x 120 image needs no crops
        assert result["usage"]["prompt_tokens"] == 257 + len(
            adapter.processor.tokenizer(result["prompt"][7:]).input_ids
        )
        usage = result["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    find = adapter.infer(module, image, {"prompt_type": "find", "find_term": "total"}, CPU)
    assert find["prompt"] == "<image>\nLocate <|ref|>total<|/ref|> in the image."


def test_grounding_output_becomes_pixel_boxes(bound, monkeypatch: pytest.MonkeyPatch) -> None:
    """generate() replaced by a recorded answer: decoding, end tokens and boxes end to end."""
    adapter, module = bound
    tokenizer = adapter.processor.tokenizer
    answer = (
        "<|ref|>Invoice<|/ref|><|det|>[[100, 200, 500, 300], [0, 0, 999, 999]]<|/det|>\n"
        "<|ref|>total<|/ref|><|det|>[[600, 700, 900, 800]]<|/det|>"
    )
    answer_ids = tokenizer(answer, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]

    def generate(input_ids: torch.Tensor, **kwargs) -> torch.Tensor:
        return torch.cat([input_ids, torch.tensor([answer_ids])], dim=1)

    monkeypatch.setattr(module, "generate", generate)
    image = page(999, 1998)  # width 999 -> x unchanged; height 2 x
    result = adapter.infer(module, image, {"prompt_type": "ocr", "grounding": "true"}, CPU)
    assert result["finish_reason"] == "stop"
    assert result["boxes"] == [
        {"label": "Invoice", "box": [100, 400, 500, 600]},
        {"label": "Invoice", "box": [0, 0, 999, 1998]},
        {"label": "total", "box": [600, 1400, 900, 1600]},
    ]
    assert result["text"].split() == ["Invoice", "total"]  # the tiny tokenizer decodes with spaces
    assert "<|det|>" in result["raw_text"] and "end▁of▁sentence" not in result["raw_text"]
    assert result["usage"]["completion_tokens"] == len(answer_ids)  # the stop token counts, as vLLM counts it
    assert len(result["lines"]) == 3
    document = adapter.infer(module, image, {"prompt_type": "document"}, CPU)
    assert document["text"] == "" and len(document["boxes"]) == 3  # labels were layout classes


def test_prompts_and_grounding_switch() -> None:
    assert build_prompt({"prompt_type": "document"}).text == "<image>\n<|grounding|>Convert the document to markdown."
    assert build_prompt({}).text == "<image>\n<|grounding|>Convert the document to markdown."  # the catalog's default
    assert build_prompt({"prompt_type": "ocr"}).text == "<image>\n<|grounding|>OCR this image."
    assert build_prompt({"prompt_type": "ocr", "grounding": "false"}).text == "<image>\nOCR this image."
    assert build_prompt({"prompt_type": "free"}).text == "<image>\nFree OCR."
    assert build_prompt({"prompt_type": "free", "grounding": "True"}).text == "<image>\n<|grounding|>Free OCR."
    assert build_prompt({"prompt_type": "figure"}).text == "<image>\nParse the figure."
    describe = build_prompt({"prompt_type": "describe", "grounding": False})
    assert describe.text == "<image>\nDescribe this image in detail."
    find = build_prompt({"prompt_type": "find", "find_term": " the total "})
    assert find.text == "<image>\nLocate <|ref|>the total<|/ref|> in the image." and find.keep_labels
    assert build_prompt({"prompt_type": "freeform", "custom_prompt": "<image>\n<|grounding|>Read it."}).text == (
        "<image>\n<|grounding|>Read it."
    )
    assert build_prompt({"prompt_type": "freeform", "custom_prompt": "Read it.", "grounding": "0"}).text == (
        "<image>\nRead it."
    )
    assert not build_prompt({"prompt_type": "document"}).keep_labels
    with pytest.raises(Unsupported, match="unknown prompt_type 'poem'.*document"):
        build_prompt({"prompt_type": "poem"})
    with pytest.raises(BadInput, match="find_term"):
        build_prompt({"prompt_type": "find"})
    with pytest.raises(BadInput, match="custom_prompt"):
        build_prompt({"prompt_type": "freeform", "custom_prompt": "  "})
    with pytest.raises(BadInput, match="grounding"):
        build_prompt({"prompt_type": "ocr", "grounding": "maybe"})


def test_dtype_is_bf16_on_cuda_and_float32_on_cpu() -> None:
    adapter = DeepseekOcr2Adapter()
    assert adapter.dtype_for(torch.device("cuda", 0)) == torch.bfloat16
    assert adapter.dtype_for(CPU) == torch.float32


def test_missing_folder_says_where_it_looked(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "DeepSeek-OCR-2"
    with pytest.raises(WeightsUnavailable, match=str(missing)):
        DeepseekOcr2Adapter({"model_path": str(missing)}).weight_files()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsUnavailable, match=f"no \\*.safetensors in {empty}"):
        DeepseekOcr2Adapter({"model_path": str(empty)}).weight_files()


def test_uncached_hub_id_offline_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    t0 = time.monotonic()
    with pytest.raises(WeightsUnavailable) as info:
        DeepseekOcr2Adapter().weight_files()  # the default: deepseek-community/DeepSeek-OCR-2
    assert time.monotonic() - t0 < 5
    assert "deepseek-community/DeepSeek-OCR-2" in str(info.value) and "model_path=DIR" in str(info.value)
    # a client sees this message (503): it names the model and the setting, never the server's paths
    assert str(tmp_path) not in str(info.value) and "/root" not in str(info.value)
