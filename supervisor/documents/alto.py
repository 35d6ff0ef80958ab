"""ALTO 4.4 documents from results: ``Page`` > ``PrintSpace`` > ``TextBlock`` > ``TextLine`` >
``String`` (with ``SP`` between words), positions in pixels (``MeasurementUnit`` pixel), word
confidence ``WC`` from 0 to 1. One ``Page`` per page, one ``TextBlock`` per reading-order block.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from supervisor.documents.text_layout import TextPage

NS = "http://www.loc.gov/standards/alto/ns-v4#"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA_LOCATION = f"{NS} http://www.loc.gov/standards/alto/v4/alto-4-4.xsd"


def _position(element: ET.Element, box: tuple[int, int, int, int]) -> None:
    x1, y1, x2, y2 = box
    element.set("HPOS", str(x1))
    element.set("VPOS", str(y1))
    element.set("WIDTH", str(max(0, x2 - x1)))
    element.set("HEIGHT", str(max(0, y2 - y1)))


def alto_document(pages: list[TextPage], filename: str = "", software_version: str = "") -> bytes:
    ET.register_namespace("", NS)
    ET.register_namespace("xsi", XSI)
    alto = ET.Element(f"{{{NS}}}alto", {f"{{{XSI}}}schemaLocation": SCHEMA_LOCATION})
    description = ET.SubElement(alto, f"{{{NS}}}Description")
    ET.SubElement(description, f"{{{NS}}}MeasurementUnit").text = "pixel"
    source = ET.SubElement(description, f"{{{NS}}}sourceImageInformation")
    ET.SubElement(source, f"{{{NS}}}fileName").text = filename
    processing = ET.SubElement(description, f"{{{NS}}}OCRProcessing", {"ID": "OCR_0"})
    step = ET.SubElement(processing, f"{{{NS}}}ocrProcessingStep")
    software = ET.SubElement(step, f"{{{NS}}}processingSoftware")
    ET.SubElement(software, f"{{{NS}}}softwareName").text = "dsocr"
    if software_version:
        ET.SubElement(software, f"{{{NS}}}softwareVersion").text = software_version
    layout = ET.SubElement(alto, f"{{{NS}}}Layout")
    for page in pages:
        p = page.number
        page_el = ET.SubElement(
            layout,
            f"{{{NS}}}Page",
            {"ID": f"page_{p}", "PHYSICAL_IMG_NR": str(p), "WIDTH": str(page.width), "HEIGHT": str(page.height)},
        )
        space = ET.SubElement(page_el, f"{{{NS}}}PrintSpace")
        _position(space, (0, 0, page.width, page.height))
        line_no = word_no = 0
        for b, block in enumerate(page.blocks(), start=1):
            block_el = ET.SubElement(space, f"{{{NS}}}TextBlock", {"ID": f"block_{p}_{b}"})
            boxes = [line.bbox for line in block]
            _position(
                block_el,
                (
                    min(x[0] for x in boxes),
                    min(x[1] for x in boxes),
                    max(x[2] for x in boxes),
                    max(x[3] for x in boxes),
                ),
            )
            for line in block:
                line_no += 1
                line_el = ET.SubElement(block_el, f"{{{NS}}}TextLine", {"ID": f"line_{p}_{line_no}"})
                _position(line_el, line.bbox)
                for index, word in enumerate(line.words):
                    if index:
                        ET.SubElement(line_el, f"{{{NS}}}SP")
                    word_no += 1
                    string = ET.SubElement(line_el, f"{{{NS}}}String", {"ID": f"string_{p}_{word_no}"})
                    _position(string, word.bbox)
                    string.set("CONTENT", word.text)
                    if word.score is not None:
                        string.set("WC", f"{min(1.0, max(0.0, word.score)):.3f}")
    return ET.tostring(alto, encoding="utf-8", xml_declaration=True)
