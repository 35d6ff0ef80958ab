"""The CLI against a real server, and without one."""

from __future__ import annotations

import subprocess
import sys

import orjson

from tests.integration.server import LINES, free_port, render_text, running_server, segments_of


def dsocr(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supervisor.cli", *args], capture_output=True, text=True,
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

        out = dsocr("offload", *url, "--model", "nope")
        assert out.returncode == 1 and "unknown model" in out.stderr


def test_commands_say_plainly_when_no_server_answers(tmp_path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (("status",), ("offload",), ("release",)):
        out = dsocr(*args, "--url", url)
        assert out.returncode == 2
        assert "no dsocr server answers" in out.stderr and "Traceback" not in out.stderr
    page = tmp_path / "p.png"
    page.write_bytes(render_text(["x"]))
    out = dsocr("ocr", "--url", url, str(page))
    assert out.returncode == 2 and "no dsocr server answers" in out.stderr


def test_local_ocr_leaves_nothing_behind(tmp_path) -> None:
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    good.write_bytes(render_text())
    bad.write_bytes(b"not an image")
    proc = subprocess.Popen([sys.executable, "-m", "supervisor.cli", "ocr", "--device", "cpu", str(good), str(bad)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1  # one file failed...
    assert "\n".join(LINES) in stdout  # ...the other was read
    assert "bad.png: error: not a readable image" in stderr
    assert segments_of(proc.pid) == []
