"""The web server's Prometheus metrics, in a registry of its own per app (two apps in one
process, as in the tests, do not share counts): HTTP requests by route and status, searches,
their latency, errors by kind, catalogue size and the inference worker's batches and images
(counters read when scraped: the mean batch size over any window is
rate(lookalike_inference_images_total) / rate(lookalike_inference_batches_total)).
No `_created` series: they say when the process started, which nobody graphs."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Seconds; a search on this 2-core CPU takes ~0.1-1 s, more when batched behind others.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


disable_created_metrics()  # type: ignore[no-untyped-call]


class _ReadAtScrape(Collector):
    """Values asked for when /metrics is scraped: gauges, and counters kept by the engine."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        for name, value in self._read().items():
            if name in _COUNTER_HELP:
                yield CounterMetricFamily(name, _COUNTER_HELP[name], value=value)
            else:
                yield GaugeMetricFamily(name, _GAUGE_HELP.get(name, name), value=value)


_GAUGE_HELP = {
    "lookalike_catalog_products": "products searchable now (active, with a vector)",
}
# Only ever grow (since the process started): counters, so rate() works.
_COUNTER_HELP = {
    "lookalike_inference_batches": "model batches the inference worker has run",
    "lookalike_inference_images": "images the inference worker has featurised",
}


class WebMetrics:
    def __init__(self, read_gauges: Callable[[], dict[str, float]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.searches = Counter(
            "lookalike_web_searches",
            "photo searches answered, by how the photo came (upload, url) and outcome",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.requests = Counter(
            "lookalike_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.search_seconds = Histogram(
            "lookalike_web_search_seconds",
            "time from a search request's arrival to its answer",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "lookalike_web_errors",
            "error answers, by kind (the problem type)",
            ["kind"],
            registry=self.registry,
        )
        self.writes = Counter(
            "lookalike_web_catalog_writes",
            "catalogue writes through the API, by action",
            ["action"],
            registry=self.registry,
        )
        self.registry.register(_ReadAtScrape(read_gauges))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetricsMiddleware:
    """Counts every answer by route template (not the raw path: bounded label values),
    method and status; a path no route knows is "unmatched"."""

    def __init__(self, app: ASGIApp, *, requests: Counter) -> None:
        self.app = app
        self.requests = requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                # The router has put the matched route in the scope by now.
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                self.requests.labels(
                    route=route, method=scope["method"], status=str(message["status"])
                ).inc()
            await send(message)

        await self.app(scope, receive, counting_send)
