"""``dsocr mcp``: a Model Context Protocol server on stdio (the official ``mcp`` SDK's ``MCPServer``).

Tools: ``ocr`` (a file path or base64 image/PDF, a prompt type, a model), ``gpu_status``,
``gpu_offload``, ``gpu_release``. With ``--url`` the tools call a running dsocr server over HTTP;
without, they run the models here through the same owner tasks the HTTP service uses (``Service``),
started on the first call and closed (engines stopped, shared memory unlinked) when the client
disconnects. stdout carries the protocol: the SDK diverts file descriptor 1 to stderr, so engines
started later cannot write into it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson

from supervisor.core.settings import Settings

INSTRUCTIONS = (
    "dsocr reads text from images and PDFs (OCR) and manages the GPU memory of its models. "
    "Call `ocr` with a file path or base64 data; `gpu_status` shows which models are resident; "
    "`gpu_offload` and `gpu_release` free GPU (and host) memory."
)


class Backend(Protocol):
    async def ocr(self, data: bytes, filename: str, fields: dict[str, str]) -> dict[str, Any]: ...
    async def status(self) -> dict[str, Any]: ...
    async def control(self, verb: str, model: str | None) -> dict[str, Any]: ...
    async def close(self) -> None: ...


class HttpBackend:
    """A running dsocr server (``--url``); sends ``$DSOCR_API_KEY`` when set."""

    def __init__(self, url: str, timeout: float = 600.0) -> None:
        self.url = url.rstrip("/")
        key = os.environ.get("DSOCR_API_KEY")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        async with aiohttp.ClientSession(timeout=self._timeout, headers=self._headers) as session:
            try:
                async with session.request(method, f"{self.url}{path}", **kwargs) as resp:
                    raw = await resp.read()
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                raise RuntimeError(f"no dsocr server answers at {self.url}: {exc or type(exc).__name__}") from None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise RuntimeError(f"HTTP {resp.status}: {raw[:200].decode('utf-8', 'replace')}") from None
        if resp.status >= 400:
            raise RuntimeError(f"HTTP {resp.status}: {body.get('error', body) if isinstance(body, dict) else body}")
        return body

    async def ocr(self, data: bytes, filename: str, fields: dict[str, str]) -> dict[str, Any]:
        form = aiohttp.FormData()
        for key, value in fields.items():
            form.add_field(key, value)
        form.add_field("file", data, filename=filename)
        return await self._call("POST", "/ocr", data=form)

    async def status(self) -> dict[str, Any]:
        return await self._call("GET", "/gpu/status")

    async def control(self, verb: str, model: str | None) -> dict[str, Any]:
        return await self._call("POST", f"/gpu/{verb}", params={"model": model} if model else None)

    async def close(self) -> None:
        return None


class LocalBackend:
    """The models run here, through one owner task each (``supervisor.core.service.Service``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._service: Any = None

    def _started(self) -> Any:
        if self._service is None:
            from supervisor.core.service import Service  # imports the lifecycle only when a tool needs it

            self._service = Service(self.settings)
            self._service.start()
        return self._service

    def _lifecycle(self, model: str | None) -> Any:
        from supervisor.api.shared import lifecycle_for

        return lifecycle_for(self._started(), model)

    async def ocr(self, data: bytes, filename: str, fields: dict[str, str]) -> dict[str, Any]:
        from supervisor.documents.pages import read_pages
        from supervisor.documents.results import pdf_body, result_body

        lc = self._lifecycle(fields.pop("model", None))
        pages = [p async for p in read_pages(lc, self.settings, data, fields)]
        if len(pages) == 1 and pages[0].count == 1:
            return result_body(pages[0].result)
        return pdf_body([p.result for p in pages], [p.number for p in pages])

    async def status(self) -> dict[str, Any]:
        service = self._started()
        return {
            "models": [
                {"model": lc.model, "state": lc.state.value, "model_location": lc.model_location,
                 "device": service.device, "idle_time": round(lc.idle_time, 3),
                 "shared_memory_bytes": lc.shared_memory_bytes, "queue_depth": lc.queue_depth,
                 "engine_pid": lc.engine.pid if lc.engine_alive and lc.engine is not None else None}
                for lc in service.lifecycles.values()
            ]
        }  # fmt: skip

    async def control(self, verb: str, model: str | None) -> dict[str, Any]:
        service = self._started()
        targets = [self._lifecycle(model)] if model else list(service.lifecycles.values())
        done = []
        for lc in targets:
            if verb == "offload":
                if await lc.offload("mcp"):
                    done.append(lc.model)
            else:
                await lc.release("mcp")
                done.append(lc.model)
        return {"status": f"{verb}ed" if verb == "offload" else "released", "models": done}

    async def close(self) -> None:
        if self._service is not None:
            await self._service.close()


def read_document(path: str | None, data_base64: str | None, limit: int) -> tuple[bytes, str]:
    """The bytes to read, from exactly one of a path or base64 data (a data URL is fine too)."""
    if (path is None) == (data_base64 is None):
        raise ValueError("give exactly one of 'path' and 'data_base64'")
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise ValueError(f"no such file: {path}")
        if file.stat().st_size > limit:
            raise ValueError(f"{path} is larger than the limit of {limit} bytes")
        return file.read_bytes(), file.name
    payload = data_base64.split(",", 1)[1] if data_base64.startswith("data:") else data_base64  # type: ignore[union-attr]
    if len(payload) * 3 // 4 > limit:
        raise ValueError(f"the data is larger than the limit of {limit} bytes")
    try:
        return base64.b64decode("".join(payload.split()), validate=True), "upload"
    except (binascii.Error, ValueError):
        raise ValueError("'data_base64' is not valid base64") from None


@contextmanager
def tool_errors() -> Iterator[None]:
    """Expected failures reach the client with their message (the SDK hides any other's text)."""
    from mcp.server.mcpserver.exceptions import ToolError

    from supervisor.http.errors import http_status

    try:
        yield
    except Exception as exc:
        status, message, _ = http_status(exc)  # our exceptions: the message /ocr would give
        if status == 500:
            if not isinstance(exc, (ValueError, RuntimeError, OSError)):
                raise
            message = str(exc)  # a bad argument, a server that answered an error
        raise ToolError(message) from exc


def build_server(backend: Backend, max_bytes: int) -> Any:
    from mcp.server.mcpserver import MCPServer

    @asynccontextmanager
    async def lifespan(server: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await backend.close()

    mcp = MCPServer("dsocr", instructions=INSTRUCTIONS, lifespan=lifespan)

    @mcp.tool()
    async def ocr(
        path: str | None = None,
        data_base64: str | None = None,
        prompt_type: str | None = None,
        model: str | None = None,
        find_term: str | None = None,
        custom_prompt: str | None = None,
    ) -> str:
        """Read the text of an image or PDF. Give `path` (a local file) or `data_base64` (the file's
        bytes in base64). `prompt_type`: ocr, free, document; deepseek-ocr-2 also figure, describe,
        find (with `find_term`), freeform (with `custom_prompt`); glm-ocr, paddleocr-vl, hunyuan-ocr
        also table, formula (and chart, seal, freeform as each has them: `gpu_status` lists every
        model's); default the model's own (document for VLMs, ocr for ppocr). `model`: default the first."""
        with tool_errors():
            data, filename = read_document(path, data_base64, max_bytes)
            given = {"prompt_type": prompt_type, "model": model, "find_term": find_term, "custom_prompt": custom_prompt}
            fields = {key: value for key, value in given.items() if value}  # no prompt_type: the model's own
            result = await backend.ocr(data, filename, fields)
        return str(result.get("text", ""))

    @mcp.tool()
    async def gpu_status() -> dict[str, Any]:
        """Each model's state (unloaded, cached, resident...), device, idle time and memory."""
        with tool_errors():
            return await backend.status()

    @mcp.tool()
    async def gpu_offload(model: str | None = None) -> dict[str, Any]:
        """Move models off the GPU (weights stay cached in shared memory); default all models."""
        with tool_errors():
            return await backend.control("offload", model)

    @mcp.tool()
    async def gpu_release(model: str | None = None) -> dict[str, Any]:
        """Stop the engines and free the shared memory of models; default all models."""
        with tool_errors():
            return await backend.control("release", model)

    return mcp


def run(url: str | None, settings: Settings) -> None:
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise SystemExit("dsocr mcp needs the MCP SDK: pip install 'dsocr[mcp]' (or mcp>=2.3)") from None
    backend: Backend = HttpBackend(url) if url else LocalBackend(settings)
    build_server(backend, settings.max_upload_bytes).run("stdio")
