"""The paddleocr-vl adapter in-process on its tiny random checkpoint (bench/tiny_models/paddleocr_vl.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import tiny_vlm

MODEL = "paddleocr-vl"
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


def test_otsl_tables_become_html_with_spans() -> None:
    from engine.models.paddleocr_vl.otsl import to_html

    otsl = "<fcel>Name<fcel>Q1<lcel><nl><fcel>Bob<fcel>1 < 2<fcel>3<nl><ucel><ecel><nl>"
    assert to_html(otsl) == (
        '<table><tr><td>Name</td><td colspan="2">Q1</td></tr>'
        '<tr><td rowspan="2">Bob</td><td>1 &lt; 2</td><td>3</td></tr><tr><td></td><td></td></tr></table>'
    )
    assert to_html("no table here") is None


def test_the_prompt_starts_with_one_begin_of_sentence_and_the_image_tokens(bound) -> None:
    adapter, _ = bound
    tok = adapter.processor.tokenizer
    inputs = adapter.make_inputs(tiny_vlm.Image.fromarray(tiny_vlm.page()), adapter.build_prompt("table", {}))
    ids = inputs["input_ids"][0].tolist()
    bos, start = tok.convert_tokens_to_ids(["<|begin_of_sentence|>", "<|IMAGE_START|>"])
    assert ids[0] == bos and ids.count(bos) == 1 and start in ids
    image_tokens = int(inputs["image_grid_thw"][0].prod()) // 4
    assert int(inputs["mm_token_type_ids"].sum()) == image_tokens
