"""Grounding spans from DeepSeek-OCR output -> pixel boxes and clean text."""

from __future__ import annotations

from engine.models.deepseek_ocr2.grounding import document_text, parse_boxes, parse_grounding

# written after the output upstream shows for "<|grounding|>Convert the document to markdown."
# (transformers' integration test expects "<|ref|>title<|/ref|><|det|>[[330, 198, 559, 230]]<|/det|>\n# R")
DOCUMENT = (
    "<|ref|>title<|/ref|><|det|>[[330, 198, 559, 230]]<|/det|>\n"
    "# R&D QUALITY IMPROVEMENT SUGGESTION/SOLUTION FORM\n\n"
    "<|ref|>text<|/ref|><|det|>[[40, 260, 960, 300], [40, 310, 500, 340]]<|/det|>\n"
    "Name/Phone Ext. : Dept. :\n\n"
    "<|ref|>table<|/ref|><|det|>[[0, 400, 999, 999]]<|/det|>\n"
    "<table><tr><td>Date</td></tr></table>"
)
W, H = 1998, 999  # 2 px per unit horizontally, 1 vertically


def test_document_boxes_are_scaled_to_pixels_and_spans_removed() -> None:
    g = parse_grounding(DOCUMENT, W, H, keep_labels=False)
    assert [b["label"] for b in g.boxes] == ["title", "text", "text", "table"]
    assert g.boxes[0]["box"] == [660, 198, 1118, 230]  # int(x / 999 * w), as upstream
    assert g.boxes[1]["box"] == [80, 260, 1920, 300]
    assert g.boxes[2]["box"] == [80, 310, 1000, 340]
    assert g.boxes[3]["box"] == [0, 400, W, H]
    assert g.text.startswith("# R&D QUALITY")
    for tag in ("<|ref|>", "<|det|>", "title", "[["):
        assert tag not in g.text
    assert "Name/Phone Ext." in g.text and g.text.endswith("</table>")
    # lines: the content that follows each span, with the box as four corners
    assert g.lines[0]["text"] == "# R&D QUALITY IMPROVEMENT SUGGESTION/SOLUTION FORM"
    assert g.lines[0]["box"] == [[660, 198], [1118, 198], [1118, 230], [660, 230]]
    assert g.lines[1]["text"] == g.lines[2]["text"] == "Name/Phone Ext. : Dept. :"


def test_ocr_and_find_keep_the_label_as_text() -> None:
    raw = (
        "<|ref|>Invoice 2041<|/ref|><|det|>[[100, 100, 500, 200]]<|/det|>\n"
        "<|ref|>Shipped to Berlin<|/ref|><|det|>[[100, 300, 600, 400]]<|/det|>"
    )
    g = parse_grounding(raw, 999, 999 * 2)
    assert g.text == "Invoice 2041\nShipped to Berlin"
    assert g.boxes == [
        {"label": "Invoice 2041", "box": [100, 200, 500, 400]},
        {"label": "Shipped to Berlin", "box": [100, 600, 600, 800]},
    ]
    assert [line["text"] for line in g.lines] == ["Invoice 2041", "Shipped to Berlin"]


def test_malformed_spans_are_tolerated() -> None:
    raw = (
        "<|ref|>a<|/ref|><|det|>[[1, 2, 3]]<|/det|> short group skipped\n"  # 3 numbers
        "<|ref|>b<|/ref|><|det|>[[999, 999, 0, 0], [5, 5, 5, 5, 5]]<|/det|>\n"  # swapped corners; 5 numbers
        "<|ref|>c<|/ref|><|det|>[ [ 10 , 20 , 30 , 40 ] ]<|/det|>\n"  # spaced out, as a tokenizer may decode
        "<|ref|>d<|/ref|><|det|>[[1200, -5, 500, 500]]<|/det|>\n"  # out of range: clamped
        "stray <|/ref|> tag and <|grounding|> and an unclosed <|ref|>e<|/ref|><|det|>[[0, 0, 999, 999"
    )
    g = parse_grounding(raw, 999, 999)
    assert g.boxes == [
        {"label": "b", "box": [0, 0, 999, 999]},
        {"label": "c", "box": [10, 20, 30, 40]},
        {"label": "d", "box": [500, 0, 999, 500]},
        {"label": "e", "box": [0, 0, 999, 999]},
    ]
    assert "<|" not in g.text and "[[" not in g.text
    assert g.text.startswith("a short group skipped\nb\nc\nd\nstray  tag and  and an unclosed e")


def test_text_without_grounding_is_unchanged() -> None:
    raw = "Plain text.\nSecond line with a literal </s> and <pad>"
    g = parse_grounding(raw, 100, 100)
    assert g.text == raw and g.boxes == [] and g.lines == []


# the markdown upstream writes for a page with a figure (run_dpsk_ocr2_image.py: result.mmd):
# image spans -> ![](images/N.jpg)\n, other spans removed, \coloneqq -> :=, \eqqcolon -> =:
FIGURE_PAGE = (
    "<|ref|>title<|/ref|><|det|>[[10, 10, 500, 60]]<|/det|>\n# Results\n\n\n\n"
    "<|ref|>image<|/ref|><|det|>[[100, 100, 899, 599]]<|/det|>\n\n"
    "<|ref|>text<|/ref|><|det|>[[10, 620, 990, 700]]<|/det|>\nLet $f \\coloneqq g$ and $h \\eqqcolon k$.\n\n\n\n\n\n"
    "<|ref|>image<|/ref|><|det|>[[0, 700, 499, 999]]<|/det|>\n"
    "<|ref|>text<|/ref|><|det|>[[10, 620, 990, 700]]<|/det|>\nStrike <s>this</s> out."
)


def test_document_figures_become_placeholders_with_their_boxes() -> None:
    g = parse_grounding(FIGURE_PAGE, 999, 999, keep_labels=False)
    assert g.text == (
        "# Results\n\n![](figure-0.png)\n\nLet $f := g$ and $h =: k$.\n\n![](figure-1.png)\n\nStrike <s>this</s> out."
    )
    figures = [b for b in g.boxes if b["label"] == "image"]
    assert figures == [
        {"label": "image", "box": [100, 100, 899, 599], "figure": 0},
        {"label": "image", "box": [0, 700, 499, 999], "figure": 1},
    ]
    assert [b["label"] for b in g.boxes] == ["title", "image", "text", "image", "text"]


def test_document_text_matches_upstream_replacements() -> None:
    """Upstream's own chain of replace() calls, on text where it is complete (runs of <= 5 newlines)."""
    text = "a \\coloneqq b\n\n\n\nc \\eqqcolon d\n\n\ne\n\n\n\n\nf"
    upstream = (
        text.replace("\\coloneqq", ":=")
        .replace("\\eqqcolon", "=:")
        .replace("\n\n\n\n", "\n\n")
        .replace("\n\n\n", "\n\n")
    )
    assert document_text(text) == upstream == "a := b\n\nc =: d\n\ne\n\nf"
    assert document_text("x" + "\n" * 9 + "y") == "x\n\ny"  # upstream leaves 3 newlines here


def test_other_modes_keep_macros_and_blank_lines() -> None:
    raw = "<|ref|>a \\coloneqq b<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\n\n\n\nnext"
    assert parse_grounding(raw, 999, 999).text == "a \\coloneqq b\n\n\n\nnext"


def test_parse_boxes_several_per_det() -> None:
    boxes = parse_boxes("[[0, 0, 999, 999], [499, 499, 999, 999]]", 1000, 500)
    assert boxes == [[0, 0, 1000, 500], [499, 249, 1000, 500]]
