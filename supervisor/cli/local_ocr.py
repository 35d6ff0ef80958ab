"""One-shot OCR without a server (``dsocr ocr FILE...``): one engine, one segment, both gone after."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ipc import protocol as p
from ipc.errors import only_result
from ipc.weights import segment_name, unlink_segment
from supervisor.core.engine_handle import EngineDead, EngineFailure, EngineHandle
from supervisor.documents.pdf import is_pdf, render_pdf
from supervisor.documents.results import pdf_body, result_body


class ModelUnavailable(RuntimeError):
    """The engine could not load the model (weights absent, no room, ...): no file can be read."""


async def _run(paths: list[Path], model: str, device: str, options: dict[str, Any], model_options: dict[str, Any],
               log_level: str) -> list[tuple[Path, dict[str, Any] | Exception]]:  # fmt: skip
    segment = segment_name(os.getpid(), model)
    engine = EngineHandle(log_level=log_level)
    results: list[tuple[Path, dict[str, Any] | Exception]] = []
    try:
        try:
            await engine.spawn()
            await engine.request(p.Load(0, model, segment, device, model_options))
        except (EngineFailure, EngineDead) as exc:
            message = str(exc).removeprefix(f"{model}: ")
            raise ModelUnavailable(f"cannot load {model}: {message}") from None
        for path in paths:
            try:
                data = path.read_bytes()
                if is_pdf(data):
                    pages = render_pdf(data)
                    replies = [
                        only_result(await engine.request(p.Infer.one(0, model, options, page.ppm))) for page in pages
                    ]
                    results.append((path, pdf_body(replies, [page.number for page in pages])))
                else:
                    reply = await engine.request(p.Infer.one(0, model, options, data))
                    results.append((path, result_body(only_result(reply))))
            except Exception as exc:  # one bad file does not stop the others
                results.append((path, exc))
    finally:
        await engine.shutdown()
        unlink_segment(segment)
    return results


def run_local(paths: list[Path], model: str, device: str, options: dict[str, Any],
              model_options: dict[str, Any] | None = None,
              log_level: str = "WARNING") -> Iterator[tuple[Path, dict[str, Any] | Exception]]:  # fmt: skip
    """(path, result or the exception that file met) for each path; :class:`ModelUnavailable` when
    the model cannot be loaded at all."""
    yield from asyncio.run(_run(paths, model, device, options, model_options or {}, log_level))
