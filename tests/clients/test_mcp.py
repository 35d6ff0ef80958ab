"""The ``mcp`` SDK's stdio client against ``dsocr mcp``: listing and calling the tools, both with
``--url`` (a running server) and with the models run in the MCP server itself (nothing left after)."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from ipc.weights import list_segments
from tests.helpers import ROOT, child_env, pid_gone, wait_until
from tests.integration.server import LINES, Server

pytestmark = pytest.mark.timeout(240)
TOOLS = {"ocr", "gpu_status", "gpu_offload", "gpu_release"}


def dsocr_mcp(*args: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "supervisor.cli", "mcp", *args], env=child_env(), cwd=str(ROOT)
    )


def text_of(result: Any) -> str:
    assert not result.is_error, result.content
    return "".join(part.text for part in result.content if part.type == "text")


def structured(result: Any) -> dict:
    assert not result.is_error, result.content
    return result.structured_content or json.loads(text_of(result))


async def test_tools_against_a_running_server(server: Server, page_png: bytes, tmp_path: Path) -> None:
    page = tmp_path / "page.png"
    page.write_bytes(page_png)
    async with Client(dsocr_mcp("--url", server.url), read_timeout_seconds=120) as client:
        tools = await client.list_tools()
        assert {t.name for t in tools.tools} == TOOLS
        ocr = next(t for t in tools.tools if t.name == "ocr")
        assert {"path", "data_base64", "prompt_type", "model"} <= set(ocr.input_schema["properties"])

        assert text_of(await client.call_tool("ocr", {"path": str(page)})).splitlines() == LINES
        encoded = base64.b64encode(page_png).decode()
        assert text_of(await client.call_tool("ocr", {"data_base64": encoded, "model": "ppocr"})).splitlines() == LINES

        status = structured(await client.call_tool("gpu_status", {}))
        assert status["models"][0]["state"] == "resident"
        assert structured(await client.call_tool("gpu_offload", {}))["models"] == ["ppocr"]
        assert structured(await client.call_tool("gpu_status", {}))["models"][0]["state"] == "cached"
        assert structured(await client.call_tool("gpu_release", {"model": "ppocr"}))["status"] == "released"
        assert structured(await client.call_tool("gpu_status", {}))["models"][0]["state"] == "unloaded"

        bad = await client.call_tool("ocr", {"path": str(tmp_path / "missing.png")})
        assert bad.is_error and "no such file" in text_of_error(bad)
        bad = await client.call_tool("ocr", {"data_base64": encoded, "model": "nope"})
        assert bad.is_error and "unknown model" in text_of_error(bad)


def text_of_error(result: Any) -> str:
    return "".join(part.text for part in result.content if part.type == "text")


async def test_tools_with_the_models_run_in_the_mcp_server(page_png: bytes, tmp_path: Path) -> None:
    page = tmp_path / "page.png"
    page.write_bytes(page_png)
    async with Client(dsocr_mcp("--device", "cpu"), read_timeout_seconds=180) as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        assert text_of(await client.call_tool("ocr", {"path": str(page)})).splitlines() == LINES
        model = structured(await client.call_tool("gpu_status", {}))["models"][0]
        assert model["state"] == "resident" and model["shared_memory_bytes"] > 0
        engine = model["engine_pid"]
        parent = int(next(line.split()[1] for line in Path(f"/proc/{engine}/status").read_text().splitlines()
                          if line.startswith("PPid:")))  # fmt: skip
        assert any(name.split("_")[1] == str(parent) for name in list_segments() if name.startswith("dsocr_"))
        assert structured(await client.call_tool("gpu_offload", {}))["models"] == ["ppocr"]
    # the client closed the MCP server: its engine and its shared memory are gone
    assert wait_until(lambda: pid_gone(engine), 30)
    assert wait_until(lambda: pid_gone(parent), 30)
    assert not [name for name in list_segments() if name.startswith(f"dsocr_{parent}_")]
