"""An engine entry point that fails at start, as one whose CUDA driver is too old would."""

from __future__ import annotations

import os
import sys
from typing import Any


def main(conn: Any, parent_pid: int, log_level: str = "INFO", threads: int | None = None) -> None:
    sys.stderr.write("loading model code\nRuntimeError: CUDA driver version is insufficient\n")
    sys.stderr.flush()
    os._exit(3)
