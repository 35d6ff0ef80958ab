"""OCRmyPDF with the dsocr plugin and no server: one local dsocr server for the whole run, however
many workers, and nothing of it left after the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pikepdf

from tests.integration.server import descendants, pid_alive, render_text, segments_of
from tests.ocrmypdf_resources import pdf_text, word_recall
from tests.pdfs import scanned_pdf

PAGES = [["Harbour office quarterly report", "Ships arrived 412"], ["Cargo handled in March", "Crane starts in June"]]


def _servers(pid: int) -> set[int]:
    found = set()
    for child in descendants(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"supervisor.cli.main" in cmdline and b"serve" in cmdline:
            found.add(child)
    return found


def test_no_server_runs_one_local_server_for_all_workers_and_stops_it(tmp_path: Path) -> None:
    scan, out = tmp_path / "scan.pdf", tmp_path / "out.pdf"
    scan.write_bytes(scanned_pdf([render_text(lines) for lines in PAGES], dpi=150))
    env = {k: v for k, v in os.environ.items() if k != "DSOCR_URL"} | {"DSOCR_DEVICE": "cpu"}
    argv = [sys.executable, "-m", "ocrmypdf", "-v", "1", "--plugin", "dsocr_ocrmypdf", "--dsocr-url", "local",
            "--jobs", "2", "--output-type", "pdf", str(scan), str(out)]  # fmt: skip
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen: set[int] = set()
    below: set[int] = set()  # the servers' engines and zygotes, whose shared memory must go too
    try:
        while run.poll() is None:  # the servers below OCRmyPDF (and its workers), while it runs
            seen |= _servers(run.pid)
            below |= {pid for server in seen for pid in descendants(server)}
            time.sleep(0.1)
        stderr = run.stderr.read() if run.stderr else ""
        assert run.returncode == 0, stderr[-3000:]
        assert len(seen) == 1, (seen, stderr[-3000:])
        assert stderr.count("started a local dsocr server") == 1, stderr[-3000:]
        (server,) = seen
        assert not pid_alive(server)
        assert below and not any(pid_alive(pid) for pid in below)
        assert not [name for pid in {server, *below} for name in segments_of(pid)]
        with pikepdf.open(out) as pdf:
            assert len(pdf.pages) == 2
        assert word_recall("\n".join(line for page in PAGES for line in page), pdf_text(out)) >= 0.95
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        for pid in seen:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
