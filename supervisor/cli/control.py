"""Commands that talk to a running server or the machine: status, offload, release, stop, gpus, mcp."""

from __future__ import annotations

import logging
import os
import sys

import click

from supervisor.cli import client
from supervisor.cli.common import NO_GPU_EXIT, call, json_option, print_json, url_option
from supervisor.core.settings import Settings, env_float


@click.command()
@url_option
@json_option
def status(url: str, as_json: bool) -> None:
    """Show the state of a running server's models."""
    body = call(client.get, f"{url}/gpu/status")
    if as_json:
        print_json(body)
        return
    for m in body.get("models", [body]):
        pid = m.get("engine_pid") or "-"
        click.echo(f"{m['model']}: {m['state']} ({m['model_location']}) on {m['device']}, engine {pid}, "
                   f"idle {m['idle_time']:.1f}s, shared memory {m['shared_memory_bytes'] / 2**20:.1f} MiB, "
                   f"GPU allocated {m['gpu_memory_allocated']:.3f} GiB")  # fmt: skip


def _control(verb: str, url: str, model: str | None, as_json: bool) -> None:
    query = f"?model={model}" if model else ""
    body = call(client.post, f"{url}/gpu/{verb}{query}")
    print_json(body) if as_json else click.echo(body.get("message", body.get("status")))


@click.command()
@url_option
@click.option("--model", default=None, help="Only this model (default: all).")
@json_option
def offload(url: str, model: str | None, as_json: bool) -> None:
    """Offload the model from the device; its weights stay cached in shared memory."""
    _control("offload", url, model, as_json)


@click.command()
@url_option
@click.option("--model", default=None, help="Only this model (default: all).")
@json_option
def release(url: str, model: str | None, as_json: bool) -> None:
    """Stop the engine and free the shared memory: nothing of the model stays."""
    _control("release", url, model, as_json)


@click.command()
@url_option
@click.option("--model", default=None, help="Only this model (default: all).")
@json_option
def stop(url: str, model: str | None, as_json: bool) -> None:
    """Stop the engine (zero GPU memory) and keep the weights cached for a fast restore."""
    _control("stop", url, model, as_json)


@click.command()
@click.option("--url", default=None, help="Use the dsocr server at this address (default: run the models here).")
@click.option("--model", "models", multiple=True, default=lambda: [os.environ.get("DSOCR_MODEL", "ppocr")],
              show_default="ppocr or $DSOCR_MODEL", help="Without --url: the models to serve (repeatable).")  # fmt: skip
@click.option("--device", default=lambda: os.environ.get("DSOCR_DEVICE", "auto"), show_default="auto",
              help="Without --url: auto | cpu | cuda | cuda:N.")  # fmt: skip
@click.option("--idle-timeout", type=float, default=lambda: env_float("GPU_IDLE_TIMEOUT", 60.0),
              show_default="60 or $GPU_IDLE_TIMEOUT", help="Without --url: idle seconds before an offload.")  # fmt: skip
def mcp(url: str | None, models: tuple[str, ...], device: str, idle_timeout: float) -> None:
    """Run a Model Context Protocol server on stdio (tools: ocr, gpu_status, gpu_offload, gpu_release)."""
    from supervisor.api import mcp as mcp_server  # stdout carries the protocol: logs go to stderr

    logging.basicConfig(level="WARNING", stream=sys.stderr, format="%(asctime)s dsocr-mcp %(levelname)s %(message)s")
    mcp_server.run(url, Settings(models=list(models), device=device, idle_timeout=idle_timeout))


@click.command()
@json_option
def gpus(as_json: bool) -> None:
    """List the visible NVIDIA GPUs and mark the one `serve --device auto` picks.

    Honours CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES. Exit status: 0 when there is a GPU,
    3 when there is none (no NVIDIA driver, or none visible): the service then runs on the CPU.
    """
    from supervisor.core import gpus as gpu_info

    try:
        found, error = gpu_info.list_gpus(), None
    except gpu_info.NoGpu as exc:
        found, error = [], str(exc)
    if not found and error is None:
        error = "no visible NVIDIA GPU (see CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES)"
    chosen = gpu_info.choose_gpu(found)
    if as_json:
        print_json({
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
