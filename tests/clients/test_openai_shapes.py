"""The pieces of the OpenAI routes that need no server: prompt strings -> options, streamed text
in page order, usage and finish reasons."""

from __future__ import annotations

from supervisor.api.openai.prompts import options_for
from supervisor.api.openai.shapes import PAGE_JOIN, finish_reason, usage
from supervisor.api.openai.stream import _PageOrder
from supervisor.documents.pages import PageResult


def test_upstream_prompt_strings_map_to_prompt_types() -> None:
    ds = "deepseek-ocr-2"
    assert options_for(ds, "<image>\nFree OCR.") == {"prompt_type": "free", "grounding": False}
    assert options_for(ds, "Free OCR. Only output the raw text.")["prompt_type"] == "free"
    assert options_for(ds, "<image>\n<|grounding|>Convert the document to markdown.") == {
        "prompt_type": "document", "grounding": True}  # fmt: skip
    assert options_for(ds, "<image>\n<|grounding|>OCR this image.") == {"prompt_type": "ocr", "grounding": True}
    assert options_for(ds, "<image>\nParse the figure.")["prompt_type"] == "figure"
    assert options_for(ds, "Describe this image in detail.")["prompt_type"] == "describe"
    assert options_for(ds, "<image>\nLocate <|ref|>the total<|/ref|> in the image.") == {
        "prompt_type": "find", "find_term": "the total", "grounding": False}  # fmt: skip
    assert options_for(ds, "") == {"prompt_type": "free", "grounding": False}
    # other text: a free-form prompt, kept as sent (its grounding token decides grounding)
    assert options_for(ds, "<image>\n<|grounding|>List the prices.") == {
        "prompt_type": "freeform", "custom_prompt": "<image>\n<|grounding|>List the prices."}  # fmt: skip


def test_a_model_without_free_form_prompts_reads_the_image() -> None:
    assert options_for("ppocr", "What is the total?") == {"prompt_type": "free"}
    assert options_for("ppocr", "<image>\nConvert the document to markdown.") == {"prompt_type": "document"}
    assert options_for("ppocr", "<image>\nParse the figure.") == {"prompt_type": "figure"}  # ppocr says no


def test_the_vlms_task_prompts_map_to_their_prompt_types_where_the_model_has_them() -> None:
    assert options_for("paddleocr-vl", "Table Recognition:") == {"prompt_type": "table"}
    assert options_for("paddleocr-vl", "<image>\nSpotting:") == {"prompt_type": "ocr"}
    assert options_for("paddleocr-vl", "Seal Recognition:") == {"prompt_type": "seal"}
    assert options_for("glm-ocr", "Formula Recognition:") == {"prompt_type": "formula"}
    assert options_for("glm-ocr", "Text Recognition:") == {"prompt_type": "free"}
    # a model without the type: its own reading of the text (deepseek: a free-form prompt)
    assert options_for("glm-ocr", "Seal Recognition:")["prompt_type"] == "freeform"
    assert options_for("deepseek-ocr-2", "Table Recognition:")["prompt_type"] == "freeform"


def page(number: int, text: str, **extra: object) -> PageResult:
    return PageResult(number, 3, {"raw_text": text, **extra}, 10, 10)


def test_partial_text_goes_out_in_page_order() -> None:
    order = _PageOrder()
    out = [order.partial(1, "a"), order.partial(2, "x"), order.partial(1, "b"), order.partial(2, "y")]
    out.append(order.finished(page(1, "abc")))  # the rest of page 1, then what page 2 wrote so far
    out.append(order.partial(2, "z"))
    out.append(order.partial(3, "q"))
    out.append(order.finished(page(2, "xyz!")))
    out.append(order.finished(page(3, "q")))
    assert "".join(out) == PAGE_JOIN.join(["abc", "xyz!", "q"])
    assert out[:4] == ["a", "", "b", ""]


def test_pages_without_partials_are_one_chunk_each() -> None:
    order = _PageOrder()
    chunks = [order.finished(page(1, "one")), order.finished(page(2, "")), order.finished(page(3, "three"))]
    assert "".join(chunks) == PAGE_JOIN.join(["one", "", "three"])


def test_usage_and_finish_reason() -> None:
    deepseek = [{"raw_text": "x", "tokens": {"prompt": 300, "generated": 12}, "finish_reason": "stop"},
                {"raw_text": "y", "tokens": {"prompt": 280, "generated": 4096}, "finish_reason": "length"}]  # fmt: skip
    assert usage(deepseek) == {"prompt_tokens": 580, "completion_tokens": 4108, "total_tokens": 4688}
    assert finish_reason(deepseek) == "length" and finish_reason(deepseek[:1]) == "stop"
    openai_named = [{"raw_text": "x", "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}}]
    assert usage(openai_named) == {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    assert usage([{"text": "Ab c\nd"}]) == {"prompt_tokens": 0, "completion_tokens": 4, "total_tokens": 4}
