"""The page with what people bring: every task of a model known before it loads, markdown shown as a
document (and model output never run as code), several files in a queue, a PDF as pages with its
progress and boxes. Real Chromium (tests/integration/browser.py), real servers, real OCR of rendered
text; layout checked at 390 px and 1280 px.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import render_text
from tests.integration.browser import DESKTOP, PHONE, browser
from tests.integration.server import running_server
from tests.pdfs import scanned_pdf

pytestmark = pytest.mark.timeout(300)

SAMPLE = Path(__file__).resolve().parents[2] / "tests" / "data" / "sample.png"

TASKS = "[...document.getElementById('prompt-type').options].filter(o => !o.disabled).map(o => o.value)"
SHOWN = "(id => !document.getElementById(id).hidden)"
DONE = "[...document.querySelectorAll('#queue li')].map(li => li.dataset.state)"
BOXES_DRAWN = """(() => { const c = document.getElementById('boxes');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true; return false; })()"""


# model output that would run code if the page let it: each sets the sentinel `pwned` (PWNED reads it);
# plain text lines, so the OCR reads them exactly; <details open ontoggle> would fire with no click
SENTINEL_LINES = ["<script>window.pwned=1</script>", "<img src=x onerror=window.pwned=1>",
                  '<a href="javascript:window.pwned=1">go</a>', "<details open ontoggle=window.pwned=1>"]  # fmt: skip
PWNED = "window.pwned ?? window.__pwned ?? null"
# what a reader does to a rendered document: click, hover, focus every element (and wait for events)
TOUCH = """(async root => { for (const e of root.querySelectorAll('*')) {
    for (const type of ['mouseover', 'focus', 'toggle', 'load', 'error']) e.dispatchEvent(new Event(type));
    e.click(); }
    await new Promise(done => setTimeout(done, 300)); })"""


def _write(path: Path, lines: list[str]) -> Path:
    path.write_bytes(render_text(lines))
    return path


async def test_in_a_browser_every_task_is_known_before_the_model_loads() -> None:
    # deepseek-ocr-2 has no weights here: its tasks must show all the same, from the catalog
    with running_server("--model", "ppocr", "--model", "deepseek-ocr-2") as server:
        async with browser() as b:
            await b.viewport(DESKTOP)
            await b.goto(f"{server.url}/")
            await b.wait_for("document.querySelectorAll('.model .badge').length === 2")
            assert await b.js("[...document.querySelectorAll('.model .badge')].map(b => b.textContent)") == [
                "unloaded", "unloaded"]  # fmt: skip
            assert await b.js(TASKS) == ["ocr", "free", "document"]
            assert not await b.js(f"{SHOWN}('grounding-field')")

            await b.js("(s => { s.value = 'deepseek-ocr-2'; s.dispatchEvent(new Event('change')); })"
                       "(document.getElementById('model'))")  # fmt: skip
            assert await b.js(TASKS) == ["ocr", "free", "document", "figure", "describe", "find", "freeform"]
            assert await b.js(f"{SHOWN}('grounding-field')")
            assert await b.js("document.getElementById('grounding').checked")  # DeepSeek grounds OCR by default
            for task, field in (("find", "find-field"), ("freeform", "prompt-field")):
                await b.js(f"(s => {{ s.value = '{task}'; s.dispatchEvent(new Event('change')); }})"
                           "(document.getElementById('prompt-type'))")  # fmt: skip
                assert await b.js(f"{SHOWN}('{field}')"), task
                assert not await b.js("document.getElementById('grounding').checked")
            await b.screenshot("tasks-deepseek-custom-prompt.png")

            # a task that needs its input says so before sending anything; absent weights are a plain error
            await b.upload("#file", SAMPLE)
            await b.click("#run")
            assert await b.js("document.getElementById('run-state').textContent") == "Enter a prompt first."
            assert await b.js(DONE) == ["waiting"]
            await b.js("document.getElementById('custom-prompt').value = 'Read the number.'")
            await b.click("#run")
            error = await b.wait_for("(e => e.hidden ? '' : e.textContent)(document.getElementById('error'))", 60)
            assert "HTTP 503" in error and "deepseek-ocr-2" in error, error
            assert await b.js(DONE) == ["failed"]

            # back to ppocr: its tasks only, and a task it lacks is not kept
            await b.js("(s => { s.value = 'ppocr'; s.dispatchEvent(new Event('change')); })"
                       "(document.getElementById('model'))")  # fmt: skip
            assert await b.js(TASKS) == ["ocr", "free", "document"]
            assert await b.js("document.getElementById('prompt-type').value") == "ocr"
            assert not await b.js(f"{SHOWN}('prompt-field')")
            assert [e for e in b.errors if "503 (Service Unavailable)" not in e] == [], b.errors


async def test_in_a_browser_three_files_queued_documents_rendered_never_run(tmp_path: Path) -> None:
    table = _write(tmp_path / "table.png", ["| Item | Qty |", "| --- | --- |", "| Tea | 2 |"])
    script = _write(tmp_path / "script.png", SENTINEL_LINES)
    heading = _write(tmp_path / "heading.png", ["# Invoice 2041", "- Tea 2", "- Milk 3"])
    with running_server("--idle-timeout", "0") as server:
        async with browser() as b:
            await b.viewport(DESKTOP)
            await b.goto(f"{server.url}/")
            await b.wait_for("document.querySelector('.model .badge')?.textContent === 'unloaded'")
            # read as ocr: ppocr's lines as they are, markdown the page renders when asked (its
            # `document` reads the layout instead, and would make a paragraph of these lines)
            await b.upload("#file", table, script, heading)
            assert await b.js(DONE) == ["waiting", "waiting", "waiting"]
            assert await b.js("document.getElementById('run').textContent") == "Read 3 files"
            await b.click("#run")
            await b.wait_for(f"JSON.stringify({DONE}) === JSON.stringify(['done', 'done', 'done'])", timeout=180)
            assert await b.js("document.getElementById('batch-text').textContent") == "3 of 3 files read"

            # the table file: a real <table>, rendered on request, raw on request
            await b.click("#queue li:nth-child(1) button")
            await b.click("#view-rendered")
            assert await b.wait_for(f"{SHOWN}('doc') && document.querySelector('#doc table') !== null")
            cells = await b.js("[...document.querySelectorAll('#doc table th, #doc table td')].map(c => c.textContent)")
            assert cells == ["Item", "Qty", "Tea", "2"]
            await b.click("#view-raw")
            assert await b.js(f"{SHOWN}('text')") and "| Item | Qty |" in await b.js(
                "document.getElementById('text').textContent"
            )
            await b.click("#view-rendered")

            # model output that looks like code is shown, never run
            await b.click("#queue li:nth-child(2) button")
            await b.wait_for(f"{SHOWN}('doc')")
            assert await b.js("document.title") == "dsocr"
            handlers = "#doc script, #doc img, #doc [onerror], #doc [ontoggle], #doc [href]"
            assert await b.js(f"document.querySelectorAll({handlers!r}).length") == 0
            assert await b.js("document.querySelector('#doc a')?.textContent") == "go"
            # every element touched as a reader would; the sentinel proves no injected code ran
            await b.js(f"{TOUCH}(document.getElementById('doc'))")
            assert await b.js(PWNED) is None
            await b.click("#view-raw")  # and the payload really was what the model read
            assert await b.js("document.getElementById('text').textContent") == "\n".join(SENTINEL_LINES)
            await b.click("#view-rendered")
            await b.click("#queue li:nth-child(3) button")
            await b.wait_for("document.querySelector('#doc h1')?.textContent === 'Invoice 2041'")
            assert await b.js("[...document.querySelectorAll('#doc li')].map(li => li.textContent)") == [
                "Tea 2", "Milk 3"]  # fmt: skip
            assert await b.overflow() <= 0
            await b.screenshot("documents-desktop.png")
            await b.viewport(PHONE)
            await b.wait_for(f"{SHOWN}('doc')")
            assert await b.overflow() <= 0, "the page is wider than a phone"
            await b.screenshot("documents-phone.png")
            assert b.errors == [], b.errors


PAGES = [["First page of two"], ["Second page", "with two lines"]]


async def test_in_a_browser_a_pdf_as_pages_with_progress_and_boxes(tmp_path: Path) -> None:
    pdf = tmp_path / "two-pages.pdf"
    pdf.write_bytes(scanned_pdf([render_text(lines) for lines in PAGES]))
    with running_server("--idle-timeout", "0") as server:
        async with browser() as b:
            await b.viewport(DESKTOP)
            await b.goto(f"{server.url}/")
            await b.wait_for("document.querySelector('.model .badge')?.textContent === 'unloaded'")
            await b.upload("#file", pdf)
            assert await b.wait_for("document.querySelectorAll('#thumbs .thumb').length === 2")
            await b.click("#run")
            # "page k of n" while it reads (the model's first load leaves time to see it)
            progress = await b.wait_for(f"{SHOWN}('progress-row') && "
                                        "document.getElementById('progress-text').textContent", interval=0.05)  # fmt: skip
            assert "of 2" in progress
            await b.wait_for(f"!{SHOWN}('progress-row') && {SHOWN}('text')", timeout=120)
            whole = await b.js("document.getElementById('text').textContent")
            assert whole == "--- Page 1 ---\nFirst page of two\n\n--- Page 2 ---\nSecond page\nwith two lines"

            # page 2: its image, its boxes drawn, its text alone
            await b.click("#thumbs .thumb:nth-child(2)")
            assert await b.wait_for("document.getElementById('box-count').textContent === '(2)'")
            assert await b.js(BOXES_DRAWN)
            assert await b.js("document.getElementById('scope').value") == "2"
            assert await b.js("document.getElementById('text').textContent") == "Second page\nwith two lines"
            assert await b.js("document.querySelector('#boxes-list .where').textContent") == " on page 2"
            assert await b.overflow() <= 0
            await b.screenshot("pdf-page-2-desktop.png")
            await b.viewport(PHONE)
            await b.wait_for(BOXES_DRAWN)
            assert await b.overflow() <= 0, "the page is wider than a phone"
            await b.screenshot("pdf-page-2-phone.png")
            assert b.errors == [], b.errors


# each sets the sentinel if it runs; the comments say which reading of the HTML each one counts on
ATTACKS = [
    '<img src=x onerror="window.__pwned=1">',
    '<details open ontoggle="window.__pwned=1"><summary>s</summary></details>',  # fires on its own
    '<a title=">" onclick="window.__pwned=1">a ">" inside quotes ends no tag</a>',
    '<b title="x"onmouseover="window.__pwned=1">no space is needed after a quoted value</b>',
    '<b o title="<"nclick="window.__pwned=1">a removed attribute must not join its neighbours</b>',
    '<!-- <a title=" --> <b onclick="window.__pwned=1">the comment ends first</b> "> -->',
    '<noscript><p title="</noscript><img src=x onerror=window.__pwned=1>"></noscript>',
    '<svg><animate onbegin="window.__pwned=1" attributeName=x dur=1s /></svg>',
    "<math><mtext><table><mglyph><style><img src=x onerror=window.__pwned=1>",
    '<a href="&#106;avascript:window.__pwned=1">j</a> <a href="java&Tab;script&colon;window.__pwned=1">k</a>',
    '<a href=" JAVASCRIPT:window.__pwned=1">l</a> <a href="data:text/html,<script>1</script>">d</a>',
    '<form><button formaction="javascript:window.__pwned=1">b</button></form>',
    '<iframe srcdoc="<script>parent.__pwned=1</script>"></iframe>',
    '<body onload="window.__pwned=1"><div =onclick="window.__pwned=1" ONCLICK="window.__pwned=1">u</div>',
    '<script>window.__pwned=1</script><textarea><b title="</textarea><img src=x onerror=window.__pwned=1>">',
]
RENDER_ATTACKS = rf"""Promise.all([import('/static/document.js'), import('/static/inert.js')]).then(async ([doc, inert]) => {{
    const attacks = {json.dumps(ATTACKS)};
    const root = document.createElement('div');
    document.body.append(root);
    for (const attack of attacks) root.append(doc.renderMarkdown(attack));
    await {TOUCH}(root);
    const all = [...root.querySelectorAll('*')];
    // what inertHtml hands on, read by the inert parser: nothing there to strip any more
    const parsed = attacks.map(a => new DOMParser().parseFromString(inert.inertHtml(a), 'text/html'));
    const clean = d => [...d.querySelectorAll('*')].every(e => !e.getAttributeNames().some(n => /^on/i.test(n)));
    return {{
        handlers: all.filter(e => e.getAttributeNames().some(n => /^on/i.test(n))).length,
        scriptUrls: all.filter(e => /^\s*(javascript|data):/i.test(e.getAttribute('href') || '')).length,
        parsedWithoutThem: parsed.every(clean),
    }};
}})"""


async def test_in_a_browser_the_renderer_keeps_figures_and_latex_and_drops_what_runs() -> None:
    """The document renderer itself (supervisor/web/document.js), on DeepSeek-style markdown."""
    markdown = (
        "# Report\n\n![](figure-1)\n\nArea \\(a^{2}\\) and $$E = mc^2$$\n\n"
        '<table><tr><td onclick="window.__pwned=1" style="color: red">cell</td></tr></table>\n\n'
        '[x](javascript:window.__pwned=1) <iframe src="/"></iframe><style>body{display:none}</style>'
    )
    with running_server() as server:
        async with browser() as b:
            await b.goto(f"{server.url}/")
            got = await b.js(f"""import('/static/document.js').then(m => {{
                const box = document.createElement('div');
                box.append(m.renderMarkdown({json.dumps(markdown)}));
                const boxes = [{{label: 'text', box: [0, 0, 5, 5]}}, {{label: 'image', box: [1, 2, 3, 4]}},
                               {{label: 'image', box: [5, 6, 7, 8]}}];
                return {{
                    figure: box.querySelector('.figure')?.dataset.figure,
                    math: [...box.querySelectorAll('code.math')].map(c => c.textContent),
                    cell: box.querySelector('td')?.textContent,
                    handlers: box.querySelectorAll('[onclick]').length,
                    dropped: box.querySelectorAll('iframe, style, script, [style]').length,
                    href: box.querySelector('a')?.getAttribute('href') ?? null,
                    second: m.figureBox(boxes, 1).box,
                }};
            }})""")
            assert got == {"figure": "1", "math": ["\\(a^{2}\\)", "$$E = mc^2$$"], "cell": "cell", "handlers": 0,
                           "dropped": 0, "href": None, "second": [5, 6, 7, 8]}  # fmt: skip
            # the known ways past a sanitizer, rendered into the live page and touched: no handler and no
            # script URL reaches any HTML parser (a CSP report would be counted), the sentinel stays unset
            assert await b.js(RENDER_ATTACKS) == {"handlers": 0, "scriptUrls": 0, "parsedWithoutThem": True}
            assert await b.js(PWNED) is None
            assert b.errors == [], b.errors

            # and with the page's CSP switched off, so only the renderer stands in the way: a payload put in
            # unsanitized does run (the sentinel can tell), none of the rendered ones does
            await b.send("Page.setBypassCSP", enabled=True)
            await b.goto(f"{server.url}/")
            await b.js("document.body.append(document.createRange().createContextualFragment("
                       "'<img src=x onerror=\"window.__control=1\">'))")  # fmt: skip
            await b.wait_for("window.__control === 1", timeout=10)
            assert (await b.js(RENDER_ATTACKS))["handlers"] == 0
            assert await b.js(PWNED) is None


async def test_in_a_browser_a_figure_placeholder_shows_the_part_its_box_covers() -> None:
    with running_server() as server:
        async with browser() as b:
            await b.goto(f"{server.url}/")
            # a 200 x 100 page, red on the left, blue on the right; the figure's box is the right half
            await b.js("""import('/static/document.js').then(m => {
                const page = document.createElement('canvas');
                page.width = 200; page.height = 100;
                const ctx = page.getContext('2d');
                ctx.fillStyle = '#f00'; ctx.fillRect(0, 0, 100, 100);
                ctx.fillStyle = '#00f'; ctx.fillRect(100, 0, 100, 100);
                window.figureRoot = document.createElement('div');
                window.figureRoot.append(m.renderMarkdown('Before\\n\\n![](figure-0.png)\\n\\n![](figure-3)'));
                m.fillFigures(window.figureRoot, [{label: 'image', box: [100, 0, 200, 100]}],
                              page.toDataURL('image/png'), {w: 200, h: 100});
            })""")
            await b.wait_for("window.figureRoot.querySelector('.figure').dataset.drawn === 'true'")
            got = await b.js("""(() => {
                const [first, second] = window.figureRoot.querySelectorAll('.figure');
                const crop = first.querySelector('canvas');
                const px = crop.getContext('2d').getImageData(0, 0, crop.width, crop.height).data;
                let blue = 0;
                for (let i = 0; i < px.length; i += 4) if (px[i] < 10 && px[i + 2] > 245) blue += 1;
                return [crop.width, crop.height, blue, first.textContent, second.textContent];
            })()""")
            assert got == [100, 100, 100 * 100, "Figure 1 · box [100, 0, 200, 100]", "Figure 4 (no box)"]
            assert b.errors == [], b.errors
