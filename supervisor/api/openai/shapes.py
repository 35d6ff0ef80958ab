"""OpenAI's answer shapes shared by the plain and the streamed chat completion."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from supervisor.core.lifecycle import ModelLifecycle


@dataclass
class ChatRequest:
    lc: ModelLifecycle
    document: bytes
    options: dict[str, Any]
    stream: bool = False
    include_usage: bool = False
    keep_alive: float | None = None
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))


def usage(results: list[dict[str, Any]]) -> dict[str, int]:
    """OpenAI's token counts, summed over pages, from the engine's (``usage`` in OpenAI's names, or
    the older ``tokens``); a model without tokens (ppocr, a CTC reader) counts one completion token
    per character it read."""
    prompt = completion = 0
    for result in results:
        counts, tokens = result.get("usage"), result.get("tokens")
        if isinstance(counts, dict):
            prompt += int(counts.get("prompt_tokens", 0))
            completion += int(counts.get("completion_tokens", 0))
        elif isinstance(tokens, dict):
            prompt += int(tokens.get("prompt", 0))
            completion += int(tokens.get("generated", 0))
        else:
            completion += sum(1 for ch in page_text(result) if not ch.isspace())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def page_text(result: dict[str, Any]) -> str:
    """What the model wrote for a page, as vLLM would give it."""
    return str(result.get("raw_text", result.get("text", "")))


def finish_reason(results: list[dict[str, Any]]) -> str:
    return "length" if any(r.get("finish_reason") == "length" for r in results) else "stop"


PAGE_JOIN = "\n\n"
