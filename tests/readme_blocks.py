"""README.md's fenced code blocks, as the README test runs them (tests/integration/test_readme.py).

The convention, for whoever writes a README block:

- Blocks fenced as ```` ```sh ````, ```` ```bash ````, ```` ```console ```` or ```` ```python ```` are
  run by the test suite, verbatim, against a live ppocr server; other blocks (``json``, diagrams,
  untagged output) are not code and are not run.
- A block that cannot run in the suite says why in an HTML comment on the line just before its fence,
  ``<!-- readme-test: skip REASON -->``, with REASON one of ``SKIP_REASONS`` (an unknown one fails the
  test). It is then counted as skipped under that name.
- Addresses are the README's own, ``127.0.0.1:8001`` (or ``localhost:8001``): the test replaces the
  port with its server's. Files a block reads (``page.png``, ``scan.pdf``, ``in.pdf``) lie in the
  block's working folder, beside ``.venv`` and ``bench`` (links to the checkout's); ``dsocr`` is on
  ``PATH``.
- ``console`` blocks run their ``$ `` lines (a line ending in ``\\`` goes on on the next one); the
  lines between are the output shown, not compared. Every ``curl`` runs with ``--fail-with-body``, so
  an HTTP error fails its block like a non-zero exit does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
RUN_LANGUAGES = {"sh": "shell", "bash": "shell", "console": "console", "python": "python"}
SKIP_REASONS = {
    "gpu": "needs an NVIDIA GPU",
    "docker": "needs Docker",
    "network": "needs a host other than this one",
    "root": "needs root",
    "install": "installs packages or runs the whole set-up (make install, make test, pip)",
    "cluster": "needs a Kubernetes cluster",
    "slow": "a benchmark of minutes",
    "synopsis": "a usage synopsis with placeholders, not commands",
}
FENCE = re.compile(r"^```(\S*)\s*$")
MARKER = re.compile(r"^<!--\s*readme-test:\s*skip\s+(\S+)\s*-->\s*$")
PORT = re.compile(r"\b(127\.0\.0\.1|localhost):8001\b")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    language: str  # "shell", "console" or "python"
    text: str
    skip: str | None  # a SKIP_REASONS key, or None: run it
    heading: str  # the section it is in, for the test's names

    @property
    def name(self) -> str:
        return f"README.md:{self.line} ({self.heading})"


def blocks(path: Path = README) -> list[Block]:
    """Every block in a language the test runs, in order, with the skip marker just before it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    heading = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        fence = FENCE.match(line)
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        language = RUN_LANGUAGES.get(fence.group(1))
        if language is not None:
            marker = MARKER.match(lines[i - 1]) if i > 0 else None
            skip = marker.group(1) if marker else None
            found.append(Block(i + 1, language, "\n".join(lines[i + 1 : end]) + "\n", skip, heading))
        i = end + 1
    return found


def with_port(text: str, port: int) -> str:
    return PORT.sub(lambda m: f"{m.group(1)}:{port}", text)


def console_commands(text: str) -> str:
    """The ``$ `` commands of a console transcript, as one shell script."""
    out: list[str] = []
    going_on = False
    for line in text.splitlines():
        if line.startswith("$ ") or going_on:
            out.append(line[2:] if line.startswith("$ ") and not going_on else line)
            going_on = line.endswith("\\")
    return "\n".join(out) + "\n"
