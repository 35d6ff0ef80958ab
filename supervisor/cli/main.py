"""The ``dsocr`` command: serve, control a running server, list GPUs, OCR files.

Every error is one line on stderr, ``error: what happened; what to do``, and the exit status says
which kind it was (see ``EXIT_CODES``); a traceback is a bug.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
import orjson
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from ipc.catalog import MODEL_NAMES, model_info
from supervisor.cli import client
from supervisor.cli.common import (
    EXIT_CODES,
    MODEL_EXIT,
    NO_SERVER_EXIT,
    OneLineErrors,
    fail,
    one_line,
    usage,
    version,
)
from supervisor.cli.control import gpus, mcp, offload, release, status, stop
from supervisor.cli.ocr_output import DOCUMENTS, FORMATS, output_paths, render, render_document
from supervisor.core.settings import OFFLOAD_POLICIES, Settings, env_float, env_int


@click.group(cls=OneLineErrors, epilog="Exit status: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()))
@click.version_option(version(), "--version", prog_name="dsocr", message="%(prog)s %(version)s")
def main() -> None:
    """dsocr: an OCR server that keeps GPU memory free whenever it is not working."""


# requests a page or a probe repeats all the time: logged at DEBUG, the rest at INFO
_QUIET_PATHS = ("/", "/health", "/ready", "/gpu/status", "/favicon.ico", "/metrics")


class QuietAccessLog(AbstractAccessLogger):
    """One access line per request; status polls and static files only at DEBUG (a tab polls every 2 s)."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        quiet = request.method == "GET" and (request.path in _QUIET_PATHS or request.path.startswith("/static/"))
        level = logging.DEBUG if quiet and response.status < 400 else logging.INFO
        if self.logger.isEnabledFor(level):
            self.logger.log(level, '%s "%s %s" %d %d %.3fs', request.remote, request.method, request.path_qs,
                            response.status, response.body_length, time)  # fmt: skip


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=lambda: env_int("PORT", 8001), show_default="8001 or $PORT")
@click.option(
    "--model",
    "models",
    multiple=True,
    default=lambda: [os.environ.get("DSOCR_MODEL", "ppocr")],
    show_default="ppocr or $DSOCR_MODEL",
    help="Model to serve (repeat for several).",
)
@click.option(
    "--device",
    default=lambda: os.environ.get("DSOCR_DEVICE", "auto"),
    show_default="auto",
    help="auto | cpu | cuda | cuda:N (auto: the least used GPU, else the CPU).",
)
@click.option(
    "--idle-timeout",
    type=float,
    default=lambda: env_float("GPU_IDLE_TIMEOUT", 60.0),
    show_default="60 or $GPU_IDLE_TIMEOUT",
    help="Seconds idle before the model is offloaded (0: never).",
)
@click.option(
    "--engine-idle-timeout",
    type=float,
    default=lambda: env_float("ENGINE_IDLE_TIMEOUT", 0.0),
    show_default="0 or $ENGINE_IDLE_TIMEOUT",
    help="Further idle seconds in 'cached' before the engine is stopped, freeing all GPU memory (0: never).",
)
@click.option("--offload-policy", type=click.Choice(OFFLOAD_POLICIES), default="idle", show_default=True)
@click.option(
    "--request-timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="An inference running longer is failed and its engine restarted.",
)
@click.option("--queue-size", type=int, default=32, show_default=True, help="Requests that may wait.")
@click.option("--max-upload-mb", type=float, default=50.0, show_default=True)
@click.option(
    "--upload-budget-mb",
    type=float,
    default=lambda: env_float("DSOCR_UPLOAD_BUDGET_MB", 96.0),
    show_default="96 or $DSOCR_UPLOAD_BUDGET_MB",
    help="Request bodies in flight, all together; a new one beyond it is answered 503 before it is read.",
)
@click.option("--pdf-dpi", type=int, default=144, show_default=True, help="Resolution PDF pages are rendered at.")
@click.option("--max-pdf-pages", type=int, default=50, show_default=True)
@click.option(
    "--api-key",
    default=lambda: os.environ.get("DSOCR_API_KEY") or None,
    show_default="$DSOCR_API_KEY",
    help="Require 'Authorization: Bearer KEY' on every route but /health and the page.",
)
@click.option("--cors-origin", "cors_origins", multiple=True, help="Origin allowed to call the API from a browser.")
@click.option(
    "--engine-threads",
    type=int,
    default=lambda: env_int("DSOCR_ENGINE_THREADS", 0) or None,
    show_default="cores / models",
    help="CPU threads per engine ($DSOCR_ENGINE_THREADS).",
)
@click.option(
    "--max-batch",
    type=int,
    default=lambda: env_int("DSOCR_MAX_BATCH", 0) or None,
    show_default="8 on CUDA, 1 on the CPU",
    help="Requests (or PDF pages) run together in one batch ($DSOCR_MAX_BATCH).",
)
@click.option(
    "--max-load-failures",
    type=int,
    default=3,
    show_default=True,
    help="Load failures in a row before a model is 'failed' (503) until a release (0: never).",
)
@click.option(
    "--max-pdf-megapixels",
    type=float,
    default=200.0,
    show_default=True,
    help="Pixels of all the pages of one PDF request together.",
)
@click.option(
    "--max-connections",
    type=int,
    default=512,
    show_default=True,
    help="Open connections; more are answered 503 and closed.",
)
@click.option(
    "--header-timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds a connection may take to send a whole request head (and idle between requests).",
)
@click.option(
    "--body-timeout", type=float, default=120.0, show_default=True, help="Seconds an upload may take (408 after)."
)
@click.option(
    "--model-option",
    "model_options",
    multiple=True,
    metavar="MODEL.KEY=VALUE",
    help="An option for one model's adapter, e.g. synthetic.gb=2 (repeatable).",
)
@click.option(
    "--preload/--no-preload",
    default=lambda: os.environ.get("DSOCR_PRELOAD", "") in ("1", "true", "yes"),
    show_default="off or $DSOCR_PRELOAD",
    help="Load every model at start; /ready answers 503 until they are resident.",
)
@click.option(
    "--drain-seconds",
    type=float,
    default=lambda: env_float("DSOCR_DRAIN_SECONDS", 0.0),
    show_default="0 or $DSOCR_DRAIN_SECONDS",
    help="On SIGTERM, keep serving this long with /ready answering 503, then shut down gracefully.",
)
@click.option(
    "--allow-remote-images",
    is_flag=True,
    help="Fetch http(s) image URLs given to /v1 routes (size and time bounded; never private addresses).",
)
@click.option("--log-level", default="INFO", show_default=True)
def serve(host: str, port: int, models: tuple[str, ...], device: str, idle_timeout: float,
          engine_idle_timeout: float, offload_policy: str, request_timeout: float, queue_size: int,
          max_upload_mb: float, upload_budget_mb: float, pdf_dpi: int, max_pdf_pages: int, api_key: str | None, cors_origins: tuple[str, ...], engine_threads: int | None, max_batch: int | None, max_load_failures: int, max_pdf_megapixels: float, max_connections: int, header_timeout: float, body_timeout: float, model_options: tuple[str, ...], preload: bool, drain_seconds: float, allow_remote_images: bool, log_level: str) -> None:  # fmt: skip
    """Run the HTTP service."""
    from supervisor.app import make_app
    from supervisor.core.gpus import NoGpu
    from supervisor.core.service import ConfigError
    from supervisor.http import server

    unknown = [m for m in models if model_info(m) is None]
    if unknown:
        usage(f"unknown model {unknown[0]!r}; known models: {', '.join(MODEL_NAMES)}")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s supervisor %(levelname)s %(message)s")
    settings = Settings(
        host=host, port=port, models=list(models), device=device, idle_timeout=idle_timeout,
        engine_idle_timeout=engine_idle_timeout, offload_policy=offload_policy,
        request_timeout=request_timeout, queue_size=queue_size, max_upload_mb=max_upload_mb,
        upload_budget_mb=upload_budget_mb,
        log_level=log_level.upper(), model_options=_parse_model_options(model_options),
        api_key=api_key, cors_origins=list(cors_origins), pdf_dpi=pdf_dpi, max_pdf_pages=max_pdf_pages,
        engine_threads=engine_threads, max_batch=max_batch, max_load_failures=max_load_failures,
        max_pdf_megapixels=max_pdf_megapixels, max_connections=max_connections,
        header_timeout=header_timeout, body_timeout=body_timeout, drain_seconds=drain_seconds, preload=preload,
        allow_remote_images=allow_remote_images,
    )  # fmt: skip
    try:
        app = make_app(settings)
    except ConfigError as exc:
        usage(str(exc))
    except NoGpu as exc:
        fail(str(exc), 3)
    try:
        # SIGTERM: /ready turns 503 for --drain-seconds, then requests in flight get 30 s to finish
        server.run(app, settings, access_log_class=QuietAccessLog)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def _parse_model_options(items: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        model, dot, name = key.partition(".")
        if not (sep and dot and model and name):
            raise click.BadParameter(f"{item!r}: expected MODEL.KEY=VALUE", param_hint="--model-option")
        try:
            value: Any = orjson.loads(raw)  # numbers and booleans as such, anything else a string
        except orjson.JSONDecodeError:
            value = raw
        options.setdefault(model, {})[name] = value
    return options


def _ocr_fields(model: str, prompt_type: str | None, find_term: str | None, custom_prompt: str | None,
                grounding: bool | None) -> dict[str, str]:  # fmt: skip
    """The request's fields, checked against the model's catalog entry before anything starts."""
    info = model_info(model)
    if info is None:
        usage(f"unknown model {model!r}; known models: {', '.join(MODEL_NAMES)}")
    assert info is not None
    prompt_type = prompt_type or info.default_prompt_type
    if prompt_type not in info.prompt_types:
        others = [m.name for m in map(model_info, MODEL_NAMES) if m and prompt_type in m.prompt_types]
        hint = f" ({', '.join(others)} has it: add --model {others[0]})" if others else ""
        usage(f"{model} has no prompt type {prompt_type!r}; it has {', '.join(info.prompt_types)}{hint}")
    fields = {"model": model, "prompt_type": prompt_type}
    if prompt_type in info.find_term:
        if not (find_term or "").strip():
            usage(f"--prompt-type {prompt_type} needs --find-term TERM (what to locate)")
        fields["find_term"] = find_term or ""
    elif find_term is not None:
        usage(f"--find-term is for --prompt-type {' or '.join(info.find_term) or 'find (deepseek-ocr-2)'}")
    if prompt_type in info.custom_prompt:
        if not (custom_prompt or "").strip():
            usage(f"--prompt-type {prompt_type} needs --custom-prompt TEXT")
        fields["custom_prompt"] = custom_prompt or ""
    elif custom_prompt is not None:
        usage(f"--custom-prompt is for --prompt-type {' or '.join(info.custom_prompt) or 'freeform (deepseek-ocr-2)'}")
    if grounding is not None:
        if not info.grounding:
            usage(f"{model} has no grounding switch; drop --grounding/--no-grounding")
        fields["grounding"] = "true" if grounding else "false"
    return fields


def _read_on_server(url: str, files: tuple[Path, ...], fields: dict[str, str]) -> list[tuple[Path, Any]]:
    results: list[tuple[Path, Any]] = []
    state = client.model_state(url, fields["model"])
    if state not in (None, "resident", "failed"):  # the first file waits for the load: say why
        click.echo(f"loading model {fields['model']} on the server (it is {state})…", err=True)
    for path in files:
        try:
            results.append((path, client.ocr_file(f"{url.rstrip('/')}/ocr", path, fields)))
        except client.ServerUnavailable as exc:
            fail(f"{exc}; start one with `dsocr serve`, or leave out --url to read here", NO_SERVER_EXIT)
        except client.ServerError as exc:
            results.append((path, exc))
    return results


def _read_here(files: tuple[Path, ...], fields: dict[str, str], device: str,
               model_options: dict[str, Any]) -> list[tuple[Path, Any]]:  # fmt: skip
    from supervisor.cli.local_ocr import ModelUnavailable, run_local
    from supervisor.core import gpus

    model = fields["model"]
    options = {k: v for k, v in fields.items() if k != "model"}
    resolved, _ = gpus.resolve_device(device)
    click.echo(f"loading model {model} on {resolved}…", err=True)
    try:
        # the engine's own log would repeat the error with a traceback: this command says it in one line
        return list(run_local(list(files), model, resolved, options, model_options.get(model, {}), "CRITICAL"))
    except ModelUnavailable as exc:
        hint = f"; point to the weights with --model-option {model}.model_path=DIR" if model != "ppocr" else ""
        fail(f"{exc}{hint}", MODEL_EXIT)
    raise AssertionError("unreachable")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", default=None, help="Send the files to this server instead of running the model here.")
@click.option("--model", default=lambda: os.environ.get("DSOCR_MODEL", "ppocr"), show_default="ppocr",
              help=f"One of: {', '.join(MODEL_NAMES)}.")  # fmt: skip
@click.option("--device", default="auto", show_default=True, help="For local runs: auto | cpu | cuda[:N].")
@click.option("--prompt-type", default=None, help="The task: ocr, free, document, ... (per model; default its own).")
@click.option("--find-term", default=None, help="What to locate (--prompt-type find).")
@click.option("--custom-prompt", default=None, help="Your own instruction (--prompt-type freeform).")
@click.option("--grounding/--no-grounding", default=None, help="Ask for boxes (models with grounding).")
@click.option("--model-option", "model_options", multiple=True, metavar="MODEL.KEY=VALUE",
              help="An adapter option for local runs, e.g. deepseek-ocr-2.model_path=/models/ds2.")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="text (default), md (markdown), json; hocr, alto (documents with word boxes), pdf "
                   "(a searchable PDF: to -o DIR, or stdout). PDF pages are marked '--- Page N ---'.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write one file per input into this folder (name.txt, name.md or name.json).")  # fmt: skip
def ocr(files: tuple[Path, ...], url: str | None, model: str, device: str, prompt_type: str | None, find_term: str | None,
        custom_prompt: str | None, grounding: bool | None, model_options: tuple[str, ...], fmt: str | None,
        as_json: bool, out_dir: Path | None) -> None:  # fmt: skip
    """OCR FILES (images, PDFs) and print their text (locally, or on a server with --url)."""
    fmt = "json" if as_json else (fmt or "text")
    fields = _ocr_fields(model, prompt_type, find_term, custom_prompt, grounding)
    if url and model_options:
        usage("--model-option sets up a local engine; for a server, give it to `dsocr serve`")
    parsed = _parse_model_options(model_options)
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            fail(f"cannot create {out_dir}: {exc.strerror or exc}")
    results = _read_on_server(url, files, fields) if url else _read_here(files, fields, device, parsed)
    targets = output_paths(list(files), out_dir, fmt) if out_dir is not None else {}
    failed = 0
    for path, result in results:
        if isinstance(result, Exception):
            failed += 1
            click.echo(f"{path}: error: {one_line(result)}", err=True)
        elif fmt in DOCUMENTS:
            document = render_document(path, result, fmt)
            if out_dir is not None:
                targets[path].write_bytes(document)
                click.echo(str(targets[path]))
            else:
                sys.stdout.buffer.write(document)
                sys.stdout.flush()
        elif out_dir is not None:
            targets[path].write_text(render(path, result, fmt, indent=True) + "\n", encoding="utf-8")
            click.echo(str(targets[path]))
        else:
            if len(files) > 1 and fmt != "json":
                click.echo(f"==> {path} <==")
            click.echo(render(path, result, fmt))
    sys.exit(1 if failed else 0)


for _command in (status, offload, release, stop, mcp, gpus):
    main.add_command(_command)


if __name__ == "__main__":
    main()
