"""The service object the routes use: settings, the chosen device, one owner per model, children.

It lives apart from the aiohttp application (``supervisor.app``) and the routes, so neither
imports the other. Start-up checks that need no engine happen here and fail fast: model names
(against ``ipc.catalog``, so the supervisor still never imports the engine) and the cache dir.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from ipc.cache import CacheDirError, cache_root, check_cache_dir
from ipc.catalog import MODEL_NAMES, option_error
from supervisor.core import gpus
from supervisor.core.children import ChildRegistry
from supervisor.core.device_arbiter import DeviceArbiter
from supervisor.core.lifecycle import ModelLifecycle
from supervisor.core.metrics import ServiceMetrics
from supervisor.core.settings import Settings
from supervisor.core.zygote import Zygote

log = logging.getLogger("dsocr.supervisor")


class ConfigError(ValueError):
    """A setting that cannot work; raised before the server listens."""


def check_settings(settings: Settings) -> None:
    unknown = [m for m in settings.models if m not in MODEL_NAMES]
    if unknown:
        raise ConfigError(f"unknown model {', '.join(map(repr, unknown))}; known models: {', '.join(MODEL_NAMES)}")
    if len(set(settings.models)) != len(settings.models):
        raise ConfigError("a model is named twice")
    for model in settings.models:
        if problem := option_error(model, settings.model_options.get(model, {})):
            raise ConfigError(f"--model-option {problem}")
        try:
            check_cache_dir(cache_root(settings.model_options.get(model)))
        except CacheDirError as exc:
            raise ConfigError(str(exc)) from None


class Service:
    """What the routes need: settings, the chosen device, one lifecycle per model, the children."""

    def __init__(self, settings: Settings) -> None:
        check_settings(settings)
        self.settings = settings
        self.started = time.monotonic()
        self.device, self.gpu = gpus.resolve_device(settings.device)
        self.children = ChildRegistry()
        self.lifecycles: dict[str, ModelLifecycle] = {}
        self.arbiter = DeviceArbiter(self.lifecycles, self._gpu_free_bytes)
        self.closing = False
        self.draining = False  # SIGTERM received: /ready answers 503 while requests still run
        self.preloading: set[str] = set()  # models --preload is loading: /ready waits for them
        self._preload_tasks: list[asyncio.Task[None]] = []
        # forks the engines (tens of ms instead of a second of imports); spawns while it is down
        self.zygote = Zygote(log_level=settings.log_level, boot_timeout=settings.boot_timeout)
        for model in settings.models:
            self.lifecycles[model] = ModelLifecycle(
                model,
                settings,
                self.device,
                launcher=self.zygote.launch,
                arbiter=self.arbiter,
                registry=self.children,
                on_engine_killed=self._wait_gpu_memory_back,
            )
        self.metrics = ServiceMetrics(lambda: self.lifecycles)

    async def _gpu_free_bytes(self) -> int | None:
        if self.gpu is None:
            return None
        return await asyncio.to_thread(self._gpu_free_bytes_now, self.gpu.index)

    @staticmethod
    def _gpu_free_bytes_now(index: int) -> int | None:
        try:
            return next((g.free_bytes for g in gpus.list_gpus() if g.index == index), None)
        except gpus.NoGpu:
            return None

    async def _wait_gpu_memory_back(self, pid: int, model: str) -> None:
        """Killing a CUDA engine frees its memory a little later: wait (bounded) and say how long."""
        seconds = await asyncio.to_thread(gpus.wait_gpu_memory_back, pid)
        if seconds is None:
            log.warning("%s: GPU memory of engine %d not seen back within 10s (or NVML cannot tell)", model, pid)
            return
        self.lifecycles[model].gpu_memory_return_s = seconds
        log.info("%s: GPU memory of engine %d back in %.3fs", model, pid, seconds)

    def start(self) -> None:
        try:
            self.zygote.start_nowait(self.children)
        except OSError as exc:  # engines are spawned instead
            log.error("cannot start the zygote: %s", exc)
        for lifecycle in self.lifecycles.values():
            lifecycle.start()
        if self.settings.preload:
            for lifecycle in self.lifecycles.values():
                self.preloading.add(lifecycle.model)
                self._preload_tasks.append(asyncio.create_task(self._preload(lifecycle)))

    async def _preload(self, lifecycle: ModelLifecycle) -> None:
        """Load at start, so that the first request (and /ready) need not wait for it."""
        try:
            await lifecycle.load("preload")
        except Exception as exc:  # the model's state (unloaded or failed) says the rest
            log.warning("%s: preload failed: %s", lifecycle.model, exc)
        finally:
            self.preloading.discard(lifecycle.model)

    async def close(self) -> None:
        self.closing = True
        for task in self._preload_tasks:
            task.cancel()
        await asyncio.gather(*(lc.close() for lc in self.lifecycles.values()))
        await self.zygote.close()

    @property
    def default_model(self) -> str:
        return self.settings.models[0]

    @property
    def backend(self) -> str:
        return "cuda" if self.device.startswith("cuda") else "cpu"

    def current_pids(self) -> set[int]:
        return {lc.engine.pid for lc in self.lifecycles.values() if lc.engine is not None and lc.engine.pid}

    def children_status(self) -> dict[str, Any]:
        """Every child process the service started, and those no owner knows (should be none)."""
        current = self.current_pids()
        children = [self.children.describe(c.pid) for c in self.children.all()]
        unowned = [c for c in children if c["role"] == "engine" and c["pid"] not in current]
        return {"children": children, "unowned_children": unowned, "zygote": self.zygote.status()}


SERVICE = web.AppKey("service", Service)
SETTINGS = web.AppKey("settings", Settings)
