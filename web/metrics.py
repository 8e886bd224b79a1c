"""The web server's Prometheus metrics, in a registry of its own per app (two apps in one
process, as in the tests, do not share counts): searches, their latency, errors by kind,
catalogue size and the inference worker's batch sizes (read when scraped)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Seconds; a search on this 2-core CPU takes ~0.1-1 s, more when batched behind others.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _ReadAtScrape(Collector):
    """Gauges whose values are asked for when /metrics is scraped."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        for name, value in self._read().items():
            yield GaugeMetricFamily(name, _GAUGE_HELP.get(name, name), value=value)


_GAUGE_HELP = {
    "lookalike_catalog_products": "products searchable now (active, with a vector)",
    "lookalike_inference_batches": "model batches the inference worker has run",
    "lookalike_inference_images": "images the inference worker has featurised",
    "lookalike_inference_mean_batch_size": "images per model batch, on average so far",
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
