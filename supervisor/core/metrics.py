"""Prometheus metrics for ``/metrics``: HTTP traffic, lifecycle transitions, queue, state, memory.

The queue gauges and the refused counter are what autoscalers read (deploy/kubernetes/).

HTTP counters are updated by a middleware (a client that went away is ``status="499"``, nginx's
convention, never a 5xx); everything about models is read from the lifecycles
at scrape time by a collector, so the lifecycle keeps a single source of truth.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from supervisor.core.lifecycle import ModelLifecycle, State


class ServiceMetrics:
    def __init__(self, lifecycles: Callable[[], dict[str, ModelLifecycle]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("dsocr_http_requests", "HTTP requests answered",
                                ["route", "method", "status"], registry=self.registry)  # fmt: skip
        self.latency = Histogram(
            "dsocr_http_request_duration_seconds", "HTTP request latency", ["route", "method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )  # fmt: skip
        self.registry.register(_LifecycleCollector(lifecycles))

    def watch_uploads(self, in_flight: Callable[[], float], limit: float, refused: Callable[[], float]) -> None:
        """Gauges of the upload budget (``supervisor.http.body_budget``), read at scrape time."""
        Gauge("dsocr_upload_bytes_in_flight", "Request-body bytes admitted and not finished",
              registry=self.registry).set_function(in_flight)  # fmt: skip
        Gauge("dsocr_upload_budget_bytes", "The budget for request bodies in flight", registry=self.registry).set(limit)
        Gauge("dsocr_upload_refused_requests", "Requests refused (503) because the upload budget was full",
              registry=self.registry).set_function(refused)  # fmt: skip

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        route = _route_label(request)
        self.requests.labels(route, request.method, str(status)).inc()
        self.latency.labels(route, request.method).observe(seconds)

    def render(self) -> web.Response:
        resp = web.Response(body=generate_latest(self.registry))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp


def _route_label(request: web.Request) -> str:
    # the route's template, never the raw path: unknown paths must not grow the label set
    route = request.match_info.route
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else "unmatched"


class _LifecycleCollector(Collector):
    def __init__(self, lifecycles: Callable[[], dict[str, ModelLifecycle]]) -> None:
        self._lifecycles = lifecycles

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        count = CounterMetricFamily("dsocr_transitions", "Model transitions done", labels=["model", "transition"])
        seconds = CounterMetricFamily("dsocr_transition_seconds", "Time spent in transitions",
                                      labels=["model", "transition"])  # fmt: skip
        state = GaugeMetricFamily("dsocr_model_state", "1 for the state each model is in", labels=["model", "state"])
        queue = GaugeMetricFamily("dsocr_queue_depth", "Requests waiting or running", labels=["model"])
        # what autoscalers read (KEDA, HPA): demand beyond the request each engine runs
        waiting = GaugeMetricFamily("dsocr_queue_waiting_requests", "Requests waiting, not running",
                                    labels=["model"])  # fmt: skip
        refused = CounterMetricFamily("dsocr_queue_refused_requests", "Requests refused because the queue was full",
                                      labels=["model"])  # fmt: skip
        returned = GaugeMetricFamily(
            "dsocr_gpu_memory_return_seconds",
            "After the last engine kill, how long until NVML listed none of its GPU memory",
            labels=["model"],
        )
        batches = CounterMetricFamily("dsocr_batches", "Batches run, by size", labels=["model", "size"])
        shm = GaugeMetricFamily("dsocr_shared_memory_bytes", "Bytes of the model's segment", labels=["model"])
        gpu = GaugeMetricFamily("dsocr_gpu_memory_bytes", "Engine allocator bytes on the device",
                                labels=["model", "kind"])  # fmt: skip
        engine = GaugeMetricFamily("dsocr_engine_running", "1 when the model's engine runs", labels=["model"])
        for name, lc in self._lifecycles().items():
            for transition, n in lc.transitions.items():
                count.add_metric([name, transition], n)
                seconds.add_metric([name, transition], lc.transition_seconds[transition])
            for s in State:
                state.add_metric([name, s.value], 1.0 if lc.state is s else 0.0)
            queue.add_metric([name], lc.queue_depth)
            waiting.add_metric([name], lc.queue_waiting)
            refused.add_metric([name], lc.refused_total)
            shm.add_metric([name], lc.shared_memory_bytes)
            if lc.gpu_memory_return_s is not None:
                returned.add_metric([name], lc.gpu_memory_return_s)
            for size, n in sorted(lc.batches.items()):
                batches.add_metric([name, str(size)], n)
            for kind in ("allocated", "reserved"):
                gpu.add_metric([name, kind], lc.device_memory.get(kind, 0))
            engine.add_metric([name], 1.0 if lc.engine_alive else 0.0)
        yield from (count, seconds, state, queue, waiting, refused, returned, batches, shm, gpu, engine)


def timing_middleware(metrics: Callable[[], ServiceMetrics | None]):  # type: ignore[no-untyped-def]
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        t0 = time.perf_counter()
        response = await handler(request)
        m = metrics()
        if m is not None:
            m.observe(request, response.status, time.perf_counter() - t0)
        return response

    return middleware
