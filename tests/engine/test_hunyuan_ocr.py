"""The hunyuan-ocr adapter in-process on its tiny random checkpoint (bench/tiny_models/hunyuan_ocr.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import tiny_vlm

MODEL = "hunyuan-ocr"
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def bound(tmp_path_factory: pytest.TempPathFactory):
    folder = tiny_vlm.build_tiny(MODEL, tmp_path_factory.mktemp(MODEL))
    with tiny_vlm.bound(MODEL, Path(folder)) as pair:
        yield pair


def test_every_prompt_type_answers_and_a_batch_gives_each_row_as_alone(bound) -> None:
    tiny_vlm.check_prompt_types_answer_and_batch_as_alone(*bound)


def test_bad_requests_fail_alone_and_the_default_is_the_document_task(bound) -> None:
    tiny_vlm.check_requests_fail_alone(*bound)
    tiny_vlm.check_catalog(bound[0])


def test_the_hub_layout_is_converted_once_and_answers_the_same(tmp_path: Path) -> None:
    folder = tiny_vlm.build_tiny(MODEL, tmp_path / "native")
    tiny_vlm.check_original_layout_converts_once_and_answers_the_same(MODEL, folder, tmp_path)


def test_the_prompt_has_one_begin_of_sentence_and_the_wrapped_image(bound) -> None:
    from bench.tiny_models import hunyuan_ocr as tiny

    adapter, _ = bound
    tok = adapter.processor.tokenizer
    inputs = adapter.make_inputs(tiny_vlm.Image.fromarray(tiny_vlm.page()), adapter.build_prompt("free", {}))
    ids = inputs["input_ids"][0].tolist()
    bos, start, end, image = tok.convert_tokens_to_ids([tiny.BOS, tiny.IMAGE_START, tiny.IMAGE_END, tiny.IMAGE])
    assert ids[0] == bos and ids.count(bos) == 1
    assert ids.index(start) < ids.index(image) and ids.index(end) > len(ids) - 1 - ids[::-1].index(image)
    assert "提取图中的文字。" in adapter.build_prompt("free", {}).text
