"""A page's layout regions with the text lines inside them, cleaned, typed and put in reading order.

The layout net (``layout_net``) gives boxes with a class; the detector and recognizer give lines.
Here the two meet, in the upright page's pixels: duplicate boxes are dropped (the net often gives
a title and a text box for the same line), each line goes to the region that holds most of it,
lines no region holds become text regions of their own (by their XY-cut block), a text region whose
lines stand in a grid becomes a table and a one-line region in large type a title, and page
numbers in the margins are footers. Reading order follows the lines' XY-cut order (``layout``:
columns, then top to bottom); a region without lines (a figure) goes before the first line below
its top in its column, and captions go next to the figure or table they label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .layout_net import Region
from .table import Grid, grid

Rect = tuple[float, float, float, float]
DUPLICATE_IOU = 0.6  # two boxes this alike are one region: the surer one stays
CONTAINED = 0.8  # a region this much inside a table or figure is part of it
LINE_IN_REGION = 0.5  # a line belongs to the region holding this share of its box, at least
MARGIN = 0.07  # the page's top and bottom share where headers, footers and page numbers sit
TITLE_HEIGHT = 1.3  # a one-line text region in type this many body line heights high is a title
# a heading's size over body text's -> its level, else 3. Size: the geometric mean of the line box's
# height and its width per character, each over the body's. Height alone separates badly (the
# detector's boxes grow less than the type: 22 px body text gives 29-30 px boxes, 26 and 32 px
# headings both 33-41); width per character alone counts bold type as larger.
HEADING_LEVELS = ((1.85, 1), (1.38, 2))
CAPTION = re.compile(r"^(figure|fig\.|table|tab\.)\s*\d", re.IGNORECASE)
PAGE_NUMBER = re.compile(r"^(page\s*)?[-–—]?\s*\d{1,4}\s*[-–—]?(\s*(of|/)\s*\d{1,4})?$", re.IGNORECASE)
FURNITURE = ("header", "footer")
CAPTIONS = {"figure_caption": "figure", "table_caption": "table"}


@dataclass
class Block:
    type: str
    rect: Rect
    score: float
    lines: list[int] = field(default_factory=list)  # indices into the page's lines
    table: Grid | None = None
    level: int | None = None  # titles: 1 (#), 2 (##), 3 (###)
    height: float = 0.0  # median line height, in pixels
    advance: float = 0.0  # median width per character of its lines, in pixels
    size: float = 0.0  # titles: their type size over the body's (``HEADING_LEVELS``)
    caption: int | None = None  # figures and tables: the index of their caption's block


def rect_of(box: np.ndarray) -> Rect:
    return (float(box[:, 0].min()), float(box[:, 1].min()), float(box[:, 0].max()), float(box[:, 1].max()))


def _area(r: Rect) -> float:
    return max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1])


def _overlap(a: Rect, b: Rect) -> float:
    return _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def _union(rects: list[Rect]) -> Rect:
    return (min(r[0] for r in rects), min(r[1] for r in rects), max(r[2] for r in rects), max(r[3] for r in rects))


def clean(regions: list[Region]) -> list[Region]:
    """Regions without duplicates, surest first; a box inside a table or figure is dropped."""
    kept: list[Region] = []
    for region in sorted(regions, key=lambda r: -r.score):
        same = False
        for other in kept:
            inter = _overlap(region.box, other.box)
            iou = inter / max(1e-6, _area(region.box) + _area(other.box) - inter)
            inside = inter / max(1e-6, _area(region.box))
            if iou > DUPLICATE_IOU or (inside > CONTAINED and other.type in ("table", "figure")):
                same = True
                break
        if not same:
            kept.append(region)
    return kept


def _assign(regions: list[Region], rects: list[Rect]) -> list[int | None]:
    owners: list[int | None] = []
    for rect in rects:
        # of the smaller of the two: a net's tight footer box inside a line's grown box holds it
        shares = [_overlap(rect, r.box) / max(1e-6, min(_area(rect), _area(r.box))) for r in regions]
        best = int(np.argmax(shares)) if shares else -1
        owners.append(best if shares and shares[best] >= LINE_IN_REGION else None)
    return owners


def blocks(
    regions: list[Region], rects: list[Rect], texts: list[str], line_blocks: list[int], page_hw: tuple[int, int]
) -> list[Block]:
    """The page's blocks in reading order. ``rects``, ``texts``, ``line_blocks``: the lines in
    their XY-cut order, upright pixels."""
    regions = clean(regions)
    owners = _assign(regions, rects)
    found = [Block(r.type, r.box, r.score) for r in regions]
    loose: dict[int, Block] = {}
    for i, owner in enumerate(owners):
        if owner is not None:
            found[owner].lines.append(i)
        else:  # no region holds it: a text region of its own XY-cut block
            loose.setdefault(line_blocks[i], Block("loose", rects[i], 0.0)).lines.append(i)
    found += loose.values()
    for block in found:
        if block.lines:
            block.rect = _union([block.rect, *(rects[i] for i in block.lines)])
            block.height = float(np.median([rects[i][3] - rects[i][1] for i in block.lines]))
            block.advance = float(np.median([(rects[i][2] - rects[i][0]) / max(1, len(texts[i])) for i in block.lines]))
    for block in found:  # first: a table's lines are not body text
        _find_table(block, rects, texts)
    body = _body(found, "height")
    advance = _body(found, "advance")
    for block in found:
        _retype(block, rects, texts, body, page_hw)
        if block.type == "title":
            block.size = float(np.sqrt(block.height / max(1.0, body) * block.advance / max(1.0, advance)))
            block.level = next((level for bound, level in HEADING_LEVELS if block.size >= bound), 3)
    return _order(found, rects)


def _body(found: list[Block], measure: str) -> float:
    """The median ``measure`` of the page's running text (of all its lines, when it has none)."""
    running = [b for b in found if b.type in ("text", "loose", "reference") and len(b.lines) > 1]
    heights = [getattr(b, measure) for b in running or [b for b in found if b.lines] for _ in b.lines]
    return float(np.median(heights)) if heights else 1.0


def _find_table(block: Block, rects: list[Rect], texts: list[str]) -> None:
    if block.type in ("text", "loose", "figure", "table") and len(block.lines) >= 6:
        found = grid([rects[i] for i in block.lines], [texts[i] for i in block.lines])
        widths = [rects[i][2] - rects[i][0] for i in block.lines]
        short = float(np.median(widths)) < 0.5 * max(1.0, block.rect[2] - block.rect[0])
        if found is not None and (block.type == "table" or short):
            block.type, block.table = "table", found


def _retype(block: Block, rects: list[Rect], texts: list[str], body: float, page_hw: tuple[int, int]) -> None:
    height = page_hw[0]
    if block.type == "loose":  # lines no region holds: in the margins, the page's furniture
        top, bottom = block.rect[3] < MARGIN * height, block.rect[1] > (1 - MARGIN) * height
        short = block.height <= TITLE_HEIGHT * body
        block.type = "header" if top and short else "footer" if bottom and short else "text"
    if block.type == "text" and block.lines and CAPTION.match(texts[block.lines[0]].strip()) and len(block.lines) <= 3:
        block.type = "table_caption" if texts[block.lines[0]].strip().lower().startswith("tab") else "figure_caption"
    if block.type == "text" and len(block.lines) == 1 and block.height >= TITLE_HEIGHT * body:
        block.type = "title"
    if (
        block.type in ("text", "title")
        and block.lines
        and all(PAGE_NUMBER.match(texts[i].strip()) for i in block.lines)
    ):
        if block.rect[3] < MARGIN * height:
            block.type = "header"
        elif block.rect[1] > (1 - MARGIN) * height:
            block.type = "footer"


def _order(found: list[Block], rects: list[Rect]) -> list[Block]:
    """Blocks by their first line's place in the XY-cut order; a block without lines before the
    first line below its top that shares its columns; captions beside what they caption."""
    total = len(rects)

    def rank(block: Block) -> float:
        if block.lines:
            return float(min(block.lines))
        x0, y0, x1, _ = block.rect
        below = [i for i in range(total) if rects[i][1] >= y0 and min(x1, rects[i][2]) > max(x0, rects[i][0])]
        return min(below) - 0.5 if below else total + y0 / 1e6

    ordered = sorted(found, key=rank)
    for index, block in enumerate(ordered):
        if block.type not in CAPTIONS:
            continue
        targets = [k for k, b in enumerate(ordered) if b.type == CAPTIONS[block.type] and b.caption is None]
        if not targets:
            continue
        nearest = min(targets, key=lambda k: _gap(block.rect, ordered[k].rect))
        ordered[nearest].caption = index
    return _captions_beside(ordered)


def _gap(a: Rect, b: Rect) -> float:
    """Vertical distance between two boxes (0 when they overlap), more when they share no x."""
    vertical = max(0.0, max(a[1], b[1]) - min(a[3], b[3]))
    shares_x = min(a[2], b[2]) > max(a[0], b[0])
    return vertical + (0 if shares_x else 1e6)


def _captions_beside(ordered: list[Block]) -> list[Block]:
    """Each caption moved to just before (caption above) or after (below) its figure or table."""
    moved = {b.caption for b in ordered if b.caption is not None}
    out: list[Block] = []
    for block in ordered:
        if id(block) in {id(ordered[k]) for k in moved}:
            continue
        caption = ordered[block.caption] if block.caption is not None else None
        above = caption is not None and caption.rect[1] < block.rect[1]
        out += [caption] if above else []
        out.append(block)
        out += [caption] if caption is not None and not above else []
    for block in out:  # re-point each caption at its new place
        block.caption = None
    for k, block in enumerate(out):
        for near in (k + 1, k - 1):
            if 0 <= near < len(out) and CAPTIONS.get(out[near].type) == block.type and block.caption is None:
                block.caption = near
    return out
