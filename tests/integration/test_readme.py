"""Every shell and Python block of README.md, run verbatim against one live ppocr server.

How a block is found, marked as not runnable here, and given its files and port: see
``tests/readme_blocks.py`` (the README's contributor notes say the same). In short: a block fenced
``sh``/``bash``/``console``/``python`` runs unless the line before its fence is
``<!-- readme-test: skip REASON -->`` (REASON: gpu, docker, network, root, install, cluster, slow,
synopsis); ``127.0.0.1:8001`` becomes the test server's address; ``curl`` fails on an HTTP error.
The last test prints how many blocks ran and how many were skipped, by reason.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import Server, render_text, running_server
from tests.pdfs import scanned_pdf
from tests.readme_blocks import SKIP_REASONS, Block, blocks, console_commands, with_port

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = blocks()
BLOCK_TIMEOUT_S = 180
# every curl of a block: an HTTP error is a failure, as a non-zero exit is
CURL_SHIM = '#!/bin/sh\nexec {curl} --fail-with-body "$@"\n'


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server("--idle-timeout", "0") as server:
        yield server


@pytest.fixture(scope="module")
def shims(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("readme-bin")
    curl = shutil.which("curl")
    assert curl, "curl is missing (apt-get install -y curl)"
    shim = folder / "curl"
    shim.write_text(CURL_SHIM.format(curl=curl))
    shim.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def documents() -> dict[str, bytes]:
    page = render_text()
    pdf = scanned_pdf([page, render_text(["Second page 77"])])
    return {"page.png": page, "scan.pdf": pdf, "in.pdf": pdf, "doc.pdf": pdf}


def workdir(tmp_path: Path, documents: dict[str, bytes]) -> Path:
    for name, data in documents.items():
        (tmp_path / name).write_bytes(data)
    for name in (".venv", "bench"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def command(block: Block, port: int) -> list[str]:
    text = with_port(block.text, port)
    if block.language == "python":
        return [sys.executable, "-c", text]
    if block.language == "console":
        text = console_commands(text)
    return ["bash", "-e", "-o", "pipefail", "-c", text]


def test_every_marker_names_a_known_reason() -> None:
    assert BLOCKS, "no runnable block found in README.md"
    unknown = {b.name: b.skip for b in BLOCKS if b.skip is not None and b.skip not in SKIP_REASONS}
    assert unknown == {}, f"unknown skip reasons (known: {', '.join(SKIP_REASONS)})"


@pytest.mark.parametrize("block", BLOCKS, ids=[f"line{b.line}" for b in BLOCKS])
def test_readme_block(block: Block, server: Server, shims: Path, documents: dict[str, bytes], tmp_path: Path) -> None:
    if block.skip is not None:
        pytest.skip(f"{block.name}: {block.skip} ({SKIP_REASONS.get(block.skip, 'unknown reason')})")
    cwd = workdir(tmp_path, documents)
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    env.pop("DSOCR_API_KEY", None)
    run = subprocess.run(command(block, server.port), cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=BLOCK_TIMEOUT_S)  # fmt: skip
    assert run.returncode == 0, (
        f"{block.name} failed (exit {run.returncode})\n--- stdout\n{run.stdout[-3000:]}\n--- stderr\n"
        f"{run.stderr[-3000:]}\n--- server\n{server.output()[-2000:]}"
    )


def test_print_the_count_of_blocks_run_and_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    skipped = collections.Counter(b.skip for b in BLOCKS if b.skip is not None)
    ran = len(BLOCKS) - sum(skipped.values())
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
    with capsys.disabled():
        print(f"\nREADME.md: {ran} blocks run, {sum(skipped.values())} skipped ({reasons})")
    assert ran > 0
