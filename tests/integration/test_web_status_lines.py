"""The page's status lines in real Chromium (tests/integration/browser.py), as a newcomer meets them:
the run line follows the queue ("Choose files to start.", then the files waiting, "Done in ..." until
a new file waits), the first read says the model is loading (the stream's first line), the batch is
a count of pages, and each of ppocr's tasks says what it gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.browser import DESKTOP, browser
from tests.integration.server import running_server

pytestmark = pytest.mark.timeout(240)

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample.png"
RUN_STATE = "document.getElementById('run-state').textContent"
TASK_NOTE = "(n => n.hidden ? '' : n.textContent)(document.getElementById('task-note'))"
TEXT_SHOWN = "(t => !t.hidden && t.textContent === 'dsocr sample 42')(document.getElementById('text'))"
FACTS = "Object.fromEntries([...document.querySelectorAll('#timing > div')].map(d => [d.firstChild.textContent, d.lastChild.textContent]))"
# every text the progress line shows, kept by the page itself (a poll could miss a short load)
RECORD_PROGRESS = """window.progressSeen = [];
    new MutationObserver(() => window.progressSeen.push(document.getElementById('progress-text').textContent))
      .observe(document.getElementById('progress-text'), { childList: true, characterData: true, subtree: true });"""


async def test_run_line_loading_notice_batch_count_and_task_notes() -> None:
    with running_server("--idle-timeout", "0") as server:
        async with browser() as b:
            await b.viewport(DESKTOP)
            await b.goto(f"{server.url}/")
            await b.wait_for("document.querySelector('.model .badge')?.textContent === 'unloaded'")
            assert await b.js(RUN_STATE) == "Choose files to start."

            # the line under the task list says what each of ppocr's tasks gives
            assert "line by line" in await b.wait_for(TASK_NOTE)
            await b.js(
                "(s => { s.value = 'free'; s.dispatchEvent(new Event('change')); })(document.getElementById('prompt-type'))"
            )
            assert "paragraphs" in await b.js(TASK_NOTE)
            await b.js(
                "(s => { s.value = 'ocr'; s.dispatchEvent(new Event('change')); })(document.getElementById('prompt-type'))"
            )

            await b.upload("#file", SAMPLE)
            assert await b.wait_for(f"{RUN_STATE} === '1 file waiting to be read.'")

            await b.js(RECORD_PROGRESS)
            await b.click("#run")
            await b.wait_for(TEXT_SHOWN, timeout=120)
            seen = await b.js("window.progressSeen")
            assert "loading model ppocr (loading)…" in seen, seen  # the first read waits for the load
            await b.wait_for("document.getElementById('timing').textContent.includes('Round trip')")
            facts = await b.js(FACTS)
            assert facts["Batch size"] == "1", facts  # a count, not "1.00 s"
            assert (await b.js(RUN_STATE)).startswith("Done in ")

            # a new file waits: the last run's "Done in ..." goes
            await b.upload("#file", SAMPLE)
            assert await b.wait_for(f"{RUN_STATE} === '1 file waiting to be read.'")
            await b.click("#run")
            await b.wait_for(f"{RUN_STATE}.startsWith('Done in ')", timeout=120)
            # the model is resident now: no loading notice on the second read
            await b.js(RECORD_PROGRESS)
            await b.upload("#file", SAMPLE)
            await b.click("#run")
            await b.wait_for(f"{RUN_STATE}.startsWith('Done in ')", timeout=120)
            assert not any("loading model" in text for text in await b.js("window.progressSeen"))
            await b.screenshot("page-status-lines.png")
            assert b.errors == [], b.errors
