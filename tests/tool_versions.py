"""The system tools the suite drives, with the versions it last passed with, printed on every run.

Debian's mirror keeps only the current version of a package, so an exact pin (``apt-get install
chromium=156...``) would fail to install next month; the Makefile installs Debian's current ones.
Instead, TESTED records what the suite passed with, and each run prints what it really used next to
it (``make test`` before pytest, ``python -m tests.tool_versions``, and pytest's header), so a failure
after a Debian update points at the tool that changed. Update TESTED after a green run on new ones.
"""

from __future__ import annotations

import re
import shutil
import subprocess

# what the suite passed with, Debian 12 (bookworm), December 2026 (kubectl: the Google Cloud SDK's on
# that machine; where none is installed the Makefile takes Debian's kubernetes-client, 1.20.2)
TESTED = {"chromium": "156.0.8078.129", "haproxy": "2.6.12", "kubectl": "1.32.4", "shellcheck": "0.9.0",
          "node": "20.20.2", "tesseract": "5.3.0", "ghostscript": "10.00.0", "pdftotext": "22.12.0"}  # fmt: skip
# how to ask each: the commands to try (the first found is used) and its arguments
COMMANDS = {
    "chromium": (("chromium", "chromium-browser", "google-chrome"), ["--version"]),
    "haproxy": (("haproxy",), ["-v"]),
    "kubectl": (("kubectl",), ["version", "--client"]),
    "shellcheck": (("shellcheck",), ["--version"]),
    "node": (("node",), ["--version"]),
    "tesseract": (("tesseract",), ["--version"]),
    "ghostscript": (("gs",), ["--version"]),
    "pdftotext": (("pdftotext",), ["-v"]),
}
VERSION = re.compile(r"\d+\.\d+(?:\.\d+)*")


def used(tool: str) -> str | None:
    """The version of ``tool`` on this machine, or None when it is missing."""
    names, args = COMMANDS[tool]
    binary = next(filter(None, map(shutil.which, names)), None)
    if binary is None:
        return None
    try:
        done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=20)
        out = done.stdout or done.stderr  # pdftotext -v prints to stderr
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    found = VERSION.search(out.split("version:", 1)[-1])  # shellcheck prints "version: 0.9.0"
    return found.group(0) if found else "unknown"


def summary() -> str:
    parts = []
    for tool, tested in TESTED.items():
        version = used(tool)
        note = "" if version == tested else f" (tested with {tested})"
        parts.append(f"{tool} {version or 'missing'}{note}")
    return "tools: " + ", ".join(parts)


if __name__ == "__main__":
    print(summary())
