"""What several dialects share: which model a request names, admission before its body is read,
``keep_alive``, and the OpenAI-style JSON error answer (OpenAI's and Mistral's routes both give it).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from supervisor.core.lifecycle import ModelLifecycle, QueueFull
from supervisor.core.service import Service
from supervisor.http.errors import ClientError, http_status
from supervisor.http.responses import json_response

log = logging.getLogger("dsocr.supervisor.api")

# text fields of /ocr passed to the model as options
OPTION_FIELDS = ("prompt_type", "find_term", "custom_prompt", "grounding", "max_tokens", "layout")


def lifecycle_for(service: Service, model: str | None) -> ModelLifecycle:
    name = model or service.default_model
    try:
        return service.lifecycles[name]
    except KeyError:
        raise ClientError(400, f"unknown model {name!r}; this server runs: {', '.join(service.lifecycles)}") from None


def admit(lc: ModelLifecycle) -> None:
    """Refuse before the body is read when the model's queue is already full (503, Retry-After)."""
    if not lc.admits():
        lc.refused_total += 1
        raise QueueFull(f"{lc.queue_waiting} requests already waiting for {lc.model}")


def parse_keep_alive(raw: Any) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ClientError(
            400, f"keep_alive must be a number of seconds (0: offload after, -1: stay), not {raw!r}"
        ) from None
    if value != value or value < -1:
        raise ClientError(400, "keep_alive must be -1 (stay resident), 0 (offload right after) or seconds")
    return value


_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                408: "timeout_error", 413: "invalid_request_error", 415: "invalid_request_error"}  # fmt: skip


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ModelNotFound(Exception):
    def __init__(self, name: str, served: list[str]) -> None:
        super().__init__(f"The model {name!r} does not exist on this server; it serves: {', '.join(served)}")
        self.name = name


def openai_errors(handler: Handler) -> Handler:
    """Answer every error of ``handler`` with OpenAI's error object and the status ``/ocr`` would give."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ModelNotFound as exc:
            return json_response(error_body(404, str(exc), "model_not_found", "model"), status=404)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return json_response(error_body(exc.status, exc.reason), status=exc.status)
        except Exception as exc:
            status, message, headers = http_status(exc)
            if status == 500:
                log.error("%s %s -> 500 [%s]", request.method, request.path, request.get("request_id"), exc_info=True)
            return json_response(error_body(status, message), status=status, headers=headers)

    return wrapped


def served_lifecycle(service: Service, name: Any) -> ModelLifecycle:
    """The model named in a /v1 request (the default when none): OpenAI's 404 for an unknown one."""
    if name is None or name == "":
        return service.lifecycles[service.default_model]
    if not isinstance(name, str):
        raise ClientError(400, "'model' must be a string")
    lc = service.lifecycles.get(name)
    if lc is None:
        raise ModelNotFound(name, list(service.lifecycles))
    return lc
