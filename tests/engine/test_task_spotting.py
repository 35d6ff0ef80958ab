"""Spotting answers (PaddleOCR-VL-1.5's ``<|LOC_n|>`` tokens, HunyuanOCR's ``<ref>text</ref><quad>(x1,y1),(x2,y2)</quad>``)
-> lines with boxes in image pixels (0-1000 normalised over the whole image)."""

from __future__ import annotations

from engine.models.task_spotting import hunyuan_spotting, paddle_spotting


def test_paddle_loc_tokens_become_quads_in_pixels() -> None:
    quad = "<|LOC_100|><|LOC_200|><|LOC_500|><|LOC_200|><|LOC_500|><|LOC_300|><|LOC_100|><|LOC_300|>"
    page = "<|LOC_0|><|LOC_0|><|LOC_1000|><|LOC_0|><|LOC_1000|><|LOC_1000|><|LOC_0|><|LOC_1000|>"
    delimited = (f"<|TEXT_START|>Invoice 2041<|TEXT_END|><|LOC_BEGIN|>{quad}<|LOC_END|>"
                 f"<|TEXT_START|>total<|TEXT_END|><|LOC_BEGIN|>{page}<|LOC_END|>")  # fmt: skip
    for raw in (delimited, f"Invoice 2041{quad}\ntotal{page}"):  # with upstream's delimiters, and bare
        out = paddle_spotting(raw, width=200, height=100)
        assert [line["text"] for line in out["lines"]] == ["Invoice 2041", "total"]
        assert out["lines"][0]["box"] == [[20, 20], [100, 20], [100, 30], [20, 30]]
        assert out["boxes"] == [{"label": "text", "box": [20, 20, 100, 30]}, {"label": "text", "box": [0, 0, 200, 100]}]
        assert out["text"] == "Invoice 2041\ntotal"


def test_hunyuan_coordinates_become_boxes_and_plain_text_stays() -> None:
    raw = "<ref>Berlin</ref><quad>(100,500),(300,750)</quad><ref>运单</ref><quad>（0，0），（1000,1000）</quad>"
    out = hunyuan_spotting(raw, width=400, height=200)
    assert [line["text"] for line in out["lines"]] == ["Berlin", "运单"]
    assert out["boxes"][0]["box"] == [40, 100, 120, 150]
    assert hunyuan_spotting("no coordinates here", 10, 10) == {
        "text": "no coordinates here", "lines": [], "boxes": [], "figures": []
    }  # fmt: skip


def test_full_width_commas_in_the_text_stay() -> None:
    out = hunyuan_spotting("<ref>你好，世界</ref><quad>(1,2),(3,4)</quad>", 1000, 1000)
    assert out["lines"][0]["text"] == "你好，世界"
