"""Service settings: one dataclass, filled from CLI options whose defaults come from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

OFFLOAD_POLICIES = ("idle", "after-request", "never")


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw in (None, "") else float(raw)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8001
    models: list[str] = field(default_factory=lambda: ["ppocr"])
    # "auto" | "cpu" | "cuda" | "cuda:N"; auto picks the least used GPU through NVML, else the CPU
    device: str = "auto"
    idle_timeout: float = 60.0  # resident -> cached after this much idle time (0 = never)
    engine_idle_timeout: float = 0.0  # cached -> engine stopped after this much more (0 = never)
    offload_policy: str = "idle"
    request_timeout: float = 300.0  # an inference running longer kills and respawns the engine
    queue_size: int = 32  # requests waiting for the engine beyond the one it runs
    max_upload_mb: float = 50.0
    # request bodies in flight, all requests together: beyond it a new upload is 503 before it is read
    upload_budget_mb: float = 96.0
    pdf_dpi: int = 144
    max_pdf_pages: int = 50
    boot_timeout: float = 120.0
    engine_threads: int | None = None  # torch CPU threads per engine; None: cores / models
    # requests run as one batch: None = 8 on CUDA, 1 on the CPU (where batching rarely pays)
    max_batch: int | None = None
    max_load_failures: int = 3  # in a row, before the model is `failed` (0: never)
    max_pdf_megapixels: float = 200.0  # all the pages of one request together
    # connections: a client slower than these is disconnected; beyond the cap new ones are refused
    header_timeout: float = 30.0
    body_timeout: float = 120.0
    keepalive_timeout: float = 75.0
    max_connections: int = 512
    preload: bool = False  # load every model at start; /ready is 503 until they are resident
    drain_seconds: float = 0.0  # on SIGTERM: serve on with /ready at 503 this long, then shut down
    log_level: str = "INFO"
    api_key: str | None = None  # when set, every route but /health and the page needs it
    cors_origins: list[str] = field(default_factory=list)
    allow_remote_images: bool = False  # fetch http(s) image URLs in JSON requests (never private addresses)
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.offload_policy not in OFFLOAD_POLICIES:
            raise ValueError(f"offload policy must be one of {', '.join(OFFLOAD_POLICIES)}")
        if not self.models:
            raise ValueError("at least one model is needed")
        if self.engine_threads is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            self.engine_threads = max(1, cores // len(self.models))

    def max_batch_for(self, device: str) -> int:
        if self.max_batch is not None:
            return max(1, self.max_batch)
        return 8 if device.startswith("cuda") else 1

    @property
    def max_pdf_pixels(self) -> int:
        return int(self.max_pdf_megapixels * 1e6)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def upload_budget_bytes(self) -> int:
        return int(self.upload_budget_mb * 2**20)
