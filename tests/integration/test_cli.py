"""The CLI against a real server, and without one."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import orjson

from tests.integration.server import LINES, free_port, render_text, running_server, segments_of
from tests.pdfs import scanned_pdf


def dsocr(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supervisor.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_control_commands_against_a_running_server(tmp_path) -> None:
    page = tmp_path / "page.png"
    page.write_bytes(render_text())
    with running_server("--idle-timeout", "0") as server:
        url = ("--url", server.url)
        out = dsocr("status", *url)
        assert out.returncode == 0 and "ppocr: unloaded" in out.stdout

        out = dsocr("ocr", *url, str(page))
        assert out.returncode == 0 and out.stdout.strip() == "\n".join(LINES)
        # the first file waits for the load, and the CLI says so (stderr: stdout stays the text)
        assert out.stderr == "loading model ppocr on the server (it is unloaded)…\n"
        assert dsocr("ocr", *url, str(page)).stderr == ""  # resident: nothing to wait for

        out = dsocr("status", *url, "--json")
        assert orjson.loads(out.stdout)["state"] == "resident"

        out = dsocr("offload", *url)
        assert out.returncode == 0 and "offloaded ppocr" in out.stdout
        assert orjson.loads(dsocr("status", *url, "--json").stdout)["state"] == "cached"

        out = dsocr("ocr", *url, "--json", str(page))
        result = orjson.loads(out.stdout)
        assert result["success"] and result["text"] == "\n".join(LINES)

        out = dsocr("release", *url, "--json")
        assert out.returncode == 0 and orjson.loads(out.stdout)["status"] == "released"
        assert segments_of(server.pid) == []
        # the release stopped the engine on purpose: the log says so, not that it was killed
        log = server.output()
        assert re.search(r"INFO engine \d+ stopped \(release\) in ", log) and "killed by" not in log, log[-2000:]

        out = dsocr("offload", *url, "--model", "nope")
        assert out.returncode == 1 and "unknown model" in out.stderr


def test_commands_say_plainly_when_no_server_answers(tmp_path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (("status",), ("offload",), ("stop",), ("release",)):
        out = dsocr(*args, "--url", url)
        assert out.returncode == 2
        assert "no dsocr server answers" in one_line_error(out)
    page = tmp_path / "p.png"
    page.write_bytes(render_text(["x"]))
    out = dsocr("ocr", "--url", url, str(page))
    assert out.returncode == 2 and "no dsocr server answers" in one_line_error(out)


def test_local_ocr_leaves_nothing_behind(tmp_path) -> None:
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    good.write_bytes(render_text())
    bad.write_bytes(b"not an image")
    proc = subprocess.Popen([sys.executable, "-m", "supervisor.cli.main", "ocr", "--device", "cpu", str(good), str(bad)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1  # one file failed...
    assert "\n".join(LINES) in stdout  # ...the other was read
    assert "bad.png: error: not a readable image" in stderr
    assert stderr.startswith("loading model ppocr on cpu…\n")
    assert segments_of(proc.pid) == []


LOADING = "loading model "  # the CLI's note before a load, not an error


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.strip().splitlines() if not line.startswith(LOADING)]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


def test_errors_are_one_line_with_a_documented_exit_code(tmp_path) -> None:
    page = tmp_path / "p.png"
    page.write_bytes(render_text(["x"]))
    out = dsocr("--version")
    assert out.returncode == 0 and out.stdout.startswith("dsocr ")
    assert "64 wrong usage" in dsocr("--help").stdout  # the exit codes are in the help

    cases = [
        (("ocr", "--model", "nosuch", str(page)), "unknown model 'nosuch'; known models: ppocr, deepseek-ocr-2"),
        (("ocr", "--prompt-type", "bogus", str(page)), "ppocr has no prompt type 'bogus'; it has ocr, free, document"),
        (("ocr", "--prompt-type", "find", str(page)), "(deepseek-ocr-2 has it: add --model deepseek-ocr-2)"),
        (("ocr", "--model", "deepseek-ocr-2", "--prompt-type", "find", str(page)), "needs --find-term"),
        (("ocr", "--find-term", "total", str(page)), "--find-term is for --prompt-type find"),
        (("ocr", "--grounding", str(page)), "ppocr has no grounding switch"),
        (("ocr", str(tmp_path / "missing.png")), "does not exist; see 'dsocr ocr --help'"),
        (("ocr", "--format", "docx", str(page)), "'docx' is not one of 'text', 'md', 'json', 'hocr', 'alto', 'pdf'"),
        (("ocr", "--url", "http://127.0.0.1:9", "--model-option", "ppocr.x=1", str(page)), "give it to `dsocr serve`"),
        (("ocr", "--model-option", "nodot=1", str(page)), "expected MODEL.KEY=VALUE"),
        (("serve", "--model", "nosuch"), "unknown model 'nosuch'"),
    ]
    for args, words in cases:
        out = dsocr(*args, timeout=30)
        assert out.returncode == 64, (args, out.stderr)
        assert words in one_line_error(out), (args, out.stderr)


def test_absent_weights_are_one_line_and_exit_4(tmp_path) -> None:
    page = tmp_path / "p.png"
    page.write_bytes(render_text(["x"]))
    out = dsocr("ocr", "--device", "cpu", "--model", "deepseek-ocr-2", "--model-option",
                f"deepseek-ocr-2.model_path={tmp_path / 'nothing'}", str(page))  # fmt: skip
    assert out.returncode == 4
    line = one_line_error(out)
    assert "cannot load deepseek-ocr-2" in line and "is not a folder" in line and "model_path=DIR" in line
    assert out.stdout == ""


def test_output_folder_formats_and_pdf_page_markers(tmp_path) -> None:
    page = tmp_path / "page.png"
    page.write_bytes(render_text())
    pdf = tmp_path / "doc.pdf"
    pdf.write_bytes(scanned_pdf([render_text(["First page"]), render_text(["Second page"])]))
    out_dir = tmp_path / "out"
    out = dsocr("ocr", "--device", "cpu", "--format", "md", "--prompt-type", "document", "-o", str(out_dir),
                str(page), str(pdf))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["doc.md", "page.md"]
    assert out.stdout.split() == [str(out_dir / "page.md"), str(out_dir / "doc.md")]
    # markdown: ppocr's layout net may take a line in large type for a heading ("### ...")
    md = (out_dir / "page.md").read_text()
    assert [line.lstrip("#").strip() for line in md.splitlines() if line.strip()] == LINES
    doc = (out_dir / "doc.md").read_text().replace("### ", "")
    assert doc == "--- Page 1 ---\nFirst page\n\n--- Page 2 ---\nSecond page\n"


def test_formats_against_a_server_and_quiet_logs(tmp_path) -> None:
    pdf = tmp_path / "doc.pdf"
    pdf.write_bytes(scanned_pdf([render_text(["First page"]), render_text(["Second page"])]))
    with running_server("--idle-timeout", "0") as server:
        url = ("--url", server.url)
        out = dsocr("ocr", *url, str(pdf))
        assert out.returncode == 0 and out.stdout == "--- Page 1 ---\nFirst page\n\n--- Page 2 ---\nSecond page\n"
        out = dsocr("ocr", *url, "--format", "json", "-o", str(tmp_path / "j"), str(pdf))
        result = orjson.loads((tmp_path / "j" / "doc.json").read_text())
        assert result["file"] == str(pdf) and [p["text"] for p in result["pages"]] == ["First page", "Second page"]
        for _ in range(3):
            assert dsocr("status", *url).returncode == 0
        log = server.output()
    # 'listening' once, after the socket listens; status polls only at DEBUG
    assert log.count("listening on") == 1
    assert "/gpu/status" not in log and '"POST /ocr' in log


def test_serve_on_a_busy_port_says_so_and_never_listening() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = dsocr("serve", "--port", str(port), "--device", "cpu", timeout=60)
    assert out.returncode == 1
    assert "listening" not in out.stderr + out.stdout
    assert f"error: cannot listen on 127.0.0.1:{port}" in out.stderr and "Traceback" not in out.stderr
