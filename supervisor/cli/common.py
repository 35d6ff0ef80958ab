"""What every ``dsocr`` command shares: exit codes, one-line errors, the --url and --json options,
and calling a server through ``supervisor.cli.client``.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from typing import Any

import click
import orjson

from supervisor.cli import client

NO_GPU_EXIT = 3
EXIT_CODES = {
    0: "done",
    1: "a file could not be read, or the server refused a request (the others were still done)",
    2: "no dsocr server answers at --url",
    3: "`dsocr gpus`: no visible NVIDIA GPU",
    4: "the model could not be loaded (weights absent, no memory...)",
    64: "wrong usage: unknown option, model or prompt type, a missing file",
    130: "interrupted (Ctrl+C)",
}
NO_SERVER_EXIT, MODEL_EXIT, USAGE_EXIT = 2, 4, 64


def default_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('PORT', '8001')}"


url_option = click.option("--url", default=default_url, show_default="http://127.0.0.1:$PORT",
                          help="Address of a running dsocr server.")  # fmt: skip
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def one_line(message: object) -> str:
    return " ".join(str(message).split())


def fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(code)


def usage(message: str) -> None:
    fail(message, USAGE_EXIT)


class OneLineErrors(click.Group):
    """Click's own errors as one line (``error: ...; see 'dsocr CMD --help'``) with exit status 64."""

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["standalone_mode"] = False
        kwargs.setdefault("prog_name", "dsocr")
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.Abort:
            fail("interrupted", 130)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "dsocr"
            usage(f"{exc.format_message().rstrip('.')}; see '{where} --help'")
        except click.ClickException as exc:
            fail(exc.format_message().rstrip("."), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)


def version() -> str:
    try:
        return importlib.metadata.version("dsocr")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def call(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        return fn(*args, **kwargs)
    except client.ServerUnavailable as exc:
        fail(f"{exc}; start one with `dsocr serve` or pass --url", NO_SERVER_EXIT)
    except client.ServerError as exc:
        fail(str(exc))
    raise AssertionError("unreachable")


def print_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
