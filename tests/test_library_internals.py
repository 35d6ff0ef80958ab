"""The library internals dsocr's code reaches into, checked on the installed versions: each still exists
with the signature and the behaviour the code copies. pyproject.toml bounds these libraries above the
versions checked here; a failure names the internal, the code that uses it and the pinned range, so an
upgrade past the bound starts here rather than with a hang in production.

Found with ``grep -rn "\\._[a-z]" supervisor engine ipc`` plus the library classes subclassed there.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from importlib.metadata import version
from pathlib import Path

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

PYPROJECT = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()


def pinned(library: str) -> str:
    found = re.search(rf'"({re.escape(library)}\s*[<>=!~][^"]*)"', PYPROJECT)
    assert found, f"{library} is not a dependency in pyproject.toml"
    return found.group(1)


def changed(library: str, internal: str, user: str) -> str:
    return (f"{user} relies on {internal}, which is not as expected in {library} {version(library)} "
            f"(pyproject.toml: {pinned(library)}): adapt {user} before raising the bound")  # fmt: skip


def parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def used_attributes(function: object, owner: str) -> set[str]:
    """The attributes of ``owner`` (source text, e.g. ``self._app``) that ``function``'s source reads."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))  # type: ignore[arg-type]
    return {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and ast.unparse(n.value) == owner}


# -- aiohttp: supervisor/http/server.py's connection cap ---------------------------------------------------

SERVER = "supervisor/http/server.py"
# what AppRunner._make_server and Application._make_handler touch on aiohttp 3.14 (Runner copies both)
RUNNER_STEPS = {"_set_loop", "on_startup", "startup", "freeze", "_make_handler"}
HANDLER_STEPS = {"_set_loop", "freeze", "_debug", "_handler_args", "_handle", "_make_request", "_loop"}
REQUEST_FACTORY = ["self", "message", "payload", "protocol", "writer", "task"]


def test_aiohttp_runner_steps_that_runner_make_server_copies_are_unchanged() -> None:
    # Runner._make_server repeats AppRunner._make_server and Application._make_handler to build its own
    # Server subclass: a step added upstream would be missing from the copy
    assert inspect.iscoroutinefunction(web.AppRunner._make_server), changed("aiohttp", "AppRunner._make_server", SERVER)
    assert parameters(web.AppRunner._make_server) == ["self"], changed("aiohttp", "AppRunner._make_server()", SERVER)
    steps = used_attributes(web.AppRunner._make_server, "self._app")
    assert steps == RUNNER_STEPS, changed("aiohttp", f"AppRunner._make_server using {sorted(RUNNER_STEPS)}", SERVER)
    steps = used_attributes(web.Application._make_handler, "self")
    assert steps == HANDLER_STEPS, changed(
        "aiohttp", f"Application._make_handler using {sorted(HANDLER_STEPS)}", SERVER
    )
    assert inspect.iscoroutinefunction(web.Application._handle), changed("aiohttp", "Application._handle", SERVER)
    assert parameters(web.Application._make_request)[:6] == REQUEST_FACTORY, changed(
        "aiohttp", f"Application._make_request({', '.join(REQUEST_FACTORY[1:])})", SERVER
    )
    assert {"request_factory", "loop", "kwargs"} <= set(parameters(Server.__init__)), changed(
        "aiohttp", "Server(handler, request_factory=, loop=, **kwargs)", SERVER
    )
    assert used_attributes(Server.__call__, "self") == {"_loop", "_kwargs"}, changed(
        "aiohttp", "Server.__call__ building RequestHandler(self, loop=self._loop, **self._kwargs)", SERVER
    )


def test_aiohttp_request_handler_internals_the_cap_reads_are_there() -> None:
    assert parameters(RequestHandler.handle_error) == ["self", "request", "status", "exc", "message"], changed(
        "aiohttp", "RequestHandler.handle_error(request, status, exc, message)", SERVER
    )
    assert parameters(RequestHandler.connection_made) == ["self", "transport"], changed(
        "aiohttp", "RequestHandler.connection_made(transport)", SERVER
    )
    # a refused connection is never registered: _Handler sets _manager to None and relies on
    # connection_lost returning at once for it
    first = ast.parse(textwrap.dedent(inspect.getsource(RequestHandler.connection_lost))).body[0].body[0]  # type: ignore[attr-defined]
    assert ast.unparse(first) == "if self._manager is None:\n    return", changed(
        "aiohttp", "RequestHandler.connection_lost ignoring a handler whose _manager is None", SERVER
    )
    for slot in ("_manager", "_waiter", "_messages"):
        assert slot in RequestHandler.__slots__, changed("aiohttp", f"RequestHandler.{slot}", SERVER)


async def test_aiohttp_the_capped_server_is_built_and_reads_its_internals() -> None:
    from supervisor.http.server import Runner, _CappedServer, _Handler

    runner = Runner(web.Application(), max_connections=2)
    await runner.setup()  # runs Runner._make_server on this aiohttp
    try:
        server = runner.server
        assert isinstance(server, _CappedServer), changed("aiohttp", "AppRunner.setup() calling _make_server", SERVER)
        assert server._connections == {} and server.connections == [], changed(
            "aiohttp", "Server._connections (a dict handler -> transport)", SERVER
        )
        handler = server()
        assert isinstance(handler, _Handler) and handler._manager is server, changed(
            "aiohttp", "RequestHandler._manager", SERVER
        )
        # a handler that has not read anything yet: no waiter, no queued message, so not idle
        assert handler._waiter is None and len(handler._messages) == 0, changed(
            "aiohttp", "RequestHandler._waiter and _messages", SERVER
        )
        assert handler.idle is False
        assert server.evict_idle() is False
    finally:
        await runner.cleanup()


# -- transformers: engine/models/deepseek_ocr2 ---------------------------------------------------------

PREPROCESS = "engine/models/deepseek_ocr2/preprocess.py"


def test_transformers_pad_to_square_is_still_the_global_views_padding() -> None:
    from transformers import DeepseekOcr2ImageProcessorPil

    from engine.models.deepseek_ocr2.preprocess import UpstreamImageProcessor

    base = DeepseekOcr2ImageProcessorPil
    internal = "DeepseekOcr2ImageProcessorPil.pad_to_square(image, background_color)"
    assert "pad_to_square" in vars(base), changed("transformers", internal, PREPROCESS)
    assert parameters(base.pad_to_square) == ["self", "image", "background_color"], changed(
        "transformers", internal, PREPROCESS
    )
    assert parameters(UpstreamImageProcessor.pad_to_square) == parameters(base.pad_to_square)
    # the override only matters while the preprocessing calls it, on the global view
    assert re.search(r"self\.pad_to_square\(\s*global_img", inspect.getsource(base)), changed(
        "transformers", f"{internal} padding the global view", PREPROCESS
    )


def test_transformers_generation_hooks_the_engine_subclasses() -> None:
    from transformers import LogitsProcessor
    from transformers.generation.streamers import BaseStreamer

    user = "engine/models/vlm (ngram.py, streaming.py)"
    assert parameters(LogitsProcessor.__call__) == ["self", "input_ids", "scores"], changed(
        "transformers", "LogitsProcessor.__call__(input_ids, scores)", user
    )
    assert parameters(BaseStreamer.put) == ["self", "value"] and parameters(BaseStreamer.end) == ["self"], changed(
        "transformers", "transformers.generation.streamers.BaseStreamer.put(value) / end()", user
    )
