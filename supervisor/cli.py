"""The ``dsocr`` command: serve, control a running server, list GPUs, OCR files."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
import orjson

from supervisor import client
from supervisor.settings import OFFLOAD_POLICIES, Settings, env_float, env_int


def _default_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('PORT', '8001')}"


url_option = click.option("--url", default=_default_url, show_default="http://127.0.0.1:$PORT",
                          help="Address of a running dsocr server.")  # fmt: skip
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _call(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        return fn(*args, **kwargs)
    except client.ServerUnavailable as exc:
        _fail(str(exc), 2)
    except client.ServerError as exc:
        _fail(str(exc))
    raise AssertionError("unreachable")


def _print_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


@click.group()
def main() -> None:
    """dsocr: an OCR server that keeps GPU memory free whenever it is not working."""


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
    "--allow-remote-images",
    is_flag=True,
    help="Fetch http(s) image URLs given to /v1 routes (size and time bounded; never private addresses).",
)
@click.option("--log-level", default="INFO", show_default=True)
def serve(host: str, port: int, models: tuple[str, ...], device: str, idle_timeout: float,
          engine_idle_timeout: float, offload_policy: str, request_timeout: float, queue_size: int,
          max_upload_mb: float, pdf_dpi: int, max_pdf_pages: int, api_key: str | None, cors_origins: tuple[str, ...], engine_threads: int | None, max_batch: int | None, max_load_failures: int, max_pdf_megapixels: float, max_connections: int, header_timeout: float, body_timeout: float, model_options: tuple[str, ...], allow_remote_images: bool, log_level: str) -> None:  # fmt: skip
    """Run the HTTP service."""
    from supervisor import server
    from supervisor.app import make_app
    from supervisor.gpus import NoGpu
    from supervisor.service import ConfigError

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s supervisor %(levelname)s %(message)s")
    settings = Settings(
        host=host, port=port, models=list(models), device=device, idle_timeout=idle_timeout,
        engine_idle_timeout=engine_idle_timeout, offload_policy=offload_policy,
        request_timeout=request_timeout, queue_size=queue_size, max_upload_mb=max_upload_mb,
        log_level=log_level.upper(), model_options=_parse_model_options(model_options),
        api_key=api_key, cors_origins=list(cors_origins), pdf_dpi=pdf_dpi, max_pdf_pages=max_pdf_pages,
        engine_threads=engine_threads, max_batch=max_batch, max_load_failures=max_load_failures,
        max_pdf_megapixels=max_pdf_megapixels, max_connections=max_connections,
        header_timeout=header_timeout, body_timeout=body_timeout, allow_remote_images=allow_remote_images,
    )  # fmt: skip
    try:
        app = make_app(settings)
    except (ConfigError, NoGpu) as exc:
        _fail(str(exc), 2)
    try:
        # SIGTERM/SIGINT: requests in flight get 30 s to finish, then engines and segments go
        server.run(app, settings)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


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


@main.command()
@url_option
@json_option
def status(url: str, as_json: bool) -> None:
    """Show the state of a running server's models."""
    body = _call(client.get, f"{url}/gpu/status")
    if as_json:
        _print_json(body)
        return
    for m in body.get("models", [body]):
        pid = m.get("engine_pid") or "-"
        click.echo(f"{m['model']}: {m['state']} ({m['model_location']}) on {m['device']}, engine {pid}, "
                   f"idle {m['idle_time']:.1f}s, shared memory {m['shared_memory_bytes'] / 2**20:.1f} MiB, "
                   f"GPU allocated {m['gpu_memory_allocated']:.3f} GiB")  # fmt: skip


def _control(verb: str, url: str, model: str | None, as_json: bool) -> None:
    query = f"?model={model}" if model else ""
    body = _call(client.post, f"{url}/gpu/{verb}{query}")
    _print_json(body) if as_json else click.echo(body.get("message", body.get("status")))


@main.command()
@url_option
@click.option("--model", default=None, help="Only this model (default: all).")
@json_option
def offload(url: str, model: str | None, as_json: bool) -> None:
    """Offload the model from the device; its weights stay cached in shared memory."""
    _control("offload", url, model, as_json)


@main.command()
@url_option
@click.option("--model", default=None, help="Only this model (default: all).")
@json_option
def release(url: str, model: str | None, as_json: bool) -> None:
    """Stop the engine and free the shared memory: nothing of the model stays."""
    _control("release", url, model, as_json)


@main.command()
@url_option
@click.option("--model", default=None, help="Only this model (default: all).")
@json_option
def stop(url: str, model: str | None, as_json: bool) -> None:
    """Stop the engine (zero GPU memory) and keep the weights cached for a fast restore."""
    _control("stop", url, model, as_json)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", default=None, help="Send the files to this server instead of running the model here.")
@click.option("--model", default=lambda: os.environ.get("DSOCR_MODEL", "ppocr"), show_default="ppocr")
@click.option("--device", default="auto", show_default=True, help="For local runs: auto | cpu | cuda[:N].")
@click.option("--prompt-type", default="ocr", show_default=True)
@json_option
def ocr(files: tuple[Path, ...], url: str | None, model: str, device: str, prompt_type: str, as_json: bool) -> None:
    """OCR FILES and print their text (locally, or on a server with --url)."""
    fields = {"prompt_type": prompt_type, "model": model}
    failed = 0
    if url:
        results = []
        for path in files:
            try:
                results.append((path, client.ocr_file(f"{url}/ocr", path, fields)))
            except client.ServerUnavailable as exc:
                _fail(str(exc), 2)
            except client.ServerError as exc:
                results.append((path, exc))
    else:
        from supervisor import gpus
        from supervisor.local_ocr import run_local

        resolved, _ = gpus.resolve_device(device)
        results = list(run_local(list(files), model, resolved, {"prompt_type": prompt_type}))
    for path, result in results:
        if isinstance(result, Exception):
            failed += 1
            click.echo(f"{path}: error: {result}", err=True)
        elif as_json:
            click.echo(orjson.dumps({"file": str(path), **result}).decode())
        else:
            if len(files) > 1:
                click.echo(f"==> {path} <==")
            click.echo(result.get("text", ""))
    sys.exit(1 if failed else 0)


@main.command()
@click.option("--url", default=None, help="Use the dsocr server at this address (default: run the models here).")
@click.option("--model", "models", multiple=True, default=lambda: [os.environ.get("DSOCR_MODEL", "ppocr")],
              show_default="ppocr or $DSOCR_MODEL", help="Without --url: the models to serve (repeatable).")  # fmt: skip
@click.option("--device", default=lambda: os.environ.get("DSOCR_DEVICE", "auto"), show_default="auto",
              help="Without --url: auto | cpu | cuda | cuda:N.")  # fmt: skip
@click.option("--idle-timeout", type=float, default=lambda: env_float("GPU_IDLE_TIMEOUT", 60.0),
              show_default="60 or $GPU_IDLE_TIMEOUT", help="Without --url: idle seconds before an offload.")  # fmt: skip
def mcp(url: str | None, models: tuple[str, ...], device: str, idle_timeout: float) -> None:
    """Run a Model Context Protocol server on stdio (tools: ocr, gpu_status, gpu_offload, gpu_release)."""
    from supervisor import mcp_server

    # stdout carries the protocol: logs go to stderr
    logging.basicConfig(level="WARNING", stream=sys.stderr, format="%(asctime)s dsocr-mcp %(levelname)s %(message)s")
    mcp_server.run(url, Settings(models=list(models), device=device, idle_timeout=idle_timeout))


NO_GPU_EXIT = 3


@main.command()
@json_option
def gpus(as_json: bool) -> None:
    """List the visible NVIDIA GPUs and mark the one `serve --device auto` picks.

    Honours CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES. Exit status: 0 when there is a GPU,
    3 when there is none (no NVIDIA driver, or none visible): the service then runs on the CPU.
    """
    from supervisor import gpus as gpu_info

    try:
        found, error = gpu_info.list_gpus(), None
    except gpu_info.NoGpu as exc:
        found, error = [], str(exc)
    if not found and error is None:
        error = "no visible NVIDIA GPU (see CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES)"
    chosen = gpu_info.choose_gpu(found)
    if as_json:
        _print_json({
            "gpus": [dict(g.as_dict(), selected=g is chosen) for g in found],
            "selected": chosen.index if chosen else None,
            "device": f"cuda:{chosen.cuda_index}" if chosen else "cpu",
            "error": error,
        })  # fmt: skip
    elif chosen is None:
        click.echo(f"No NVIDIA GPU: {error}. `dsocr serve` runs on the CPU.")
    else:
        click.echo(gpu_info.format_gpus(found, chosen))
    sys.exit(0 if chosen else NO_GPU_EXIT)


if __name__ == "__main__":
    main()
