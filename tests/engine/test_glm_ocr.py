"""The glm-ocr adapter in-process on its tiny random checkpoint (bench/tiny_models/glm_ocr.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import tiny_vlm

MODEL = "glm-ocr"
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


def test_both_end_tokens_stop_and_image_tokens_are_marked(bound) -> None:
    adapter, _ = bound
    tok = adapter.processor.tokenizer
    assert adapter.stop_token_ids() == tok.convert_tokens_to_ids(["<|endoftext|>", "<|user|>"])
    prompt = adapter.build_prompt("table", {})
    assert prompt.text.startswith("[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>Table Recognition:")
    inputs = adapter.make_inputs(tiny_vlm.Image.fromarray(tiny_vlm.page()), prompt)
    image_tokens = int(inputs["image_grid_thw"][0].prod()) // 4
    assert int(inputs["mm_token_type_ids"].sum()) == image_tokens
    assert (inputs["input_ids"] == tok.convert_tokens_to_ids("<|image|>")).sum() == image_tokens
