"""/healthz, /readyz, /metrics, the OpenAPI schema and docs, the page's files, CORS, and the
per-address search rate limit (shared through the database) with Retry-After."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np

from search.featurize.featurizer import Featurizer
from tests.web.conftest import copy_catalog
from tests.web.server import LiveServer, live_server, open_test_engine
from tests.web.test_search_api import assert_problem, search
from web.config import WebConfig


def test_health_and_readiness(server: LiveServer) -> None:
    with server.client() as client:
        assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"model": "loaded", "database": "ok"}


class GatedFeaturizer:
    """The real featurizer behind a gate: its first batch (the warm-up) waits until the test
    opens it, so the server's loading state can be seen."""

    def __init__(self, inner: Featurizer) -> None:
        self.inner = inner
        self.model_name, self.dim = inner.model_name, inner.dim
        self.gate = threading.Event()

    def embed(self, batch: np.ndarray) -> np.ndarray:
        assert self.gate.wait(timeout=60), "the test never opened the gate"
        return self.inner.embed(batch)


def test_the_server_listens_at_once_and_is_ready_after_warm_up(
    web_catalog: Path, tmp_path: Path, models_dir: Path, extractor: Featurizer
) -> None:
    settings = copy_catalog(web_catalog, tmp_path / "db", models_dir)
    gated = GatedFeaturizer(extractor)
    engine = open_test_engine(settings, gated)
    server = LiveServer(engine, WebConfig())
    try:
        server.start(wait_ready=False)
        with server.client() as client:
            assert client.get("/healthz").status_code == 200
            assert client.head("/healthz").status_code == 200
            loading = client.get("/readyz")
            assert loading.status_code == 503
            assert loading.json()["checks"]["model"] == "loading"
            gated.gate.set()
            server.wait_ready()
            assert client.get("/readyz").json()["checks"]["model"] == "loaded"
    finally:
        gated.gate.set()
        server.stop()
        engine.close()


def _metric(text: str, name: str, default: float | None = None) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    if match is None and default is not None:
        return default  # a labelled counter appears once it has counted something
    assert match, f"{name} not in the metrics"
    return float(match.group(1))


def test_metrics_count_searches_errors_and_the_catalogue(
    server: LiveServer, query_photo: bytes
) -> None:
    with server.client() as client:
        before = client.get("/metrics").text
        ok_before = _metric(
            before, 'lookalike_web_searches_total{outcome="ok",source="upload"}', default=0
        )
        assert search(client, query_photo).status_code == 200
        assert client.get("/api/v1/products/nope").status_code == 404
        response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert _metric(text, 'lookalike_web_searches_total{outcome="ok",source="upload"}') == (
        ok_before + 1
    )
    assert _metric(text, 'lookalike_web_errors_total{kind="not-found"}') >= 1
    assert _metric(text, "lookalike_web_search_seconds_count") >= 1
    assert _metric(text, "lookalike_catalog_products") == 300
    assert _metric(text, "lookalike_inference_images_total") >= 1
    assert _metric(text, "lookalike_inference_batches_total") >= 1
    assert re.search(r"^# TYPE lookalike_inference_images(_total)? counter$", text, re.MULTILINE)
    assert "_created" not in text
    requests = (
        'lookalike_http_requests_total{method="GET",route="/api/v1/products/{sku}",status="404"}'
    )
    assert _metric(text, requests) >= 1
    assert (
        _metric(
            text, 'lookalike_http_requests_total{method="POST",route="/api/v1/search",status="200"}'
        )
        >= 1
    )


def test_openapi_docs_and_page(server: LiveServer) -> None:
    with server.client() as client:
        schema = client.get("/openapi.json").json()
        assert {"/api/v1/search", "/api/v1/products/{sku}", "/media/{file_name}"} <= set(
            schema["paths"]
        )
        search_body = schema["paths"]["/api/v1/search"]["post"]["requestBody"]["content"]
        assert {"multipart/form-data", "application/json"} <= set(search_body)
        assert "swagger" in client.get("/docs").text.lower()
        page = client.get("/")
        assert page.headers["content-type"].startswith("text/html")
        assert "Lookalike.mount" in page.text
        assert client.get("/static/app.js").status_code == 200
        embed = client.get("/embed.js")
        assert embed.headers["content-type"].startswith("text/javascript")
        assert "data-target" in embed.text


def test_cors_only_for_configured_origins(server: LiveServer) -> None:
    shop = "https://shop.example"
    with server.client() as client:
        # The session server allows no other origin.
        refused = client.options(
            "/api/v1/search",
            headers={"Origin": shop, "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in refused.headers
        plain = client.get("/api/v1/categories", headers={"Origin": shop})
        assert "access-control-allow-origin" not in plain.headers


def test_cors_for_a_configured_origin(
    web_catalog: Path, tmp_path: Path, models_dir: Path, extractor: Featurizer
) -> None:
    settings = copy_catalog(web_catalog, tmp_path / "db", models_dir)
    config = WebConfig(cors_origins=("https://shop.example",))
    with live_server(settings, extractor, config) as running, running.client() as client:
        allowed = client.options(
            "/api/v1/search",
            headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
        other = client.options(
            "/api/v1/search",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in other.headers


def test_search_rate_limit_per_address_is_shared_by_instances(
    web_catalog: Path, tmp_path: Path, models_dir: Path, extractor: Featurizer, query_photo: bytes
) -> None:
    """Two servers over one database (as behind a load balancer) share the limit: 3 a minute,
    with the default settings (no secret configured: the key is the database's); a restarted
    server still counts them."""
    settings = copy_catalog(web_catalog, tmp_path / "db", models_dir)
    config = WebConfig(searches_per_minute=3)
    with (
        live_server(settings, extractor, config) as first,
        live_server(settings, extractor, config) as second,
        first.client() as one,
        second.client() as two,
    ):
        assert search(one, query_photo).status_code == 200
        assert search(two, query_photo).status_code == 200
        assert search(one, query_photo).status_code == 200
        limited = search(two, query_photo)
        body = assert_problem(limited, 429, "too many searches")
        assert body["type"] == "/problems/rate-limited"
        wait = int(limited.headers["retry-after"])
        assert 1 <= wait <= 60
        assert search(one, query_photo).status_code == 429
        # Other requests are not limited.
        assert one.get("/api/v1/categories").status_code == 200
    with live_server(settings, extractor, config) as restarted, restarted.client() as again:
        assert_problem(search(again, query_photo), 429, "too many searches")


def test_image_urls_to_private_addresses_are_refused(
    fresh_server: LiveServer, query_photo: bytes
) -> None:
    with fresh_server.client() as client:
        response = client.post("/api/v1/search", json={"image_url": f"{fresh_server.url}/healthz"})
    # The guard's own reason: with it off, the same request fails later, for another reason
    # (/healthz is not an image), and this test would not notice.
    assert_problem(response, 422, "image URL", "private or local network")


def test_transport_is_plain_http_on_loopback(server: LiveServer) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    with httpx.Client() as client:
        assert client.get(f"{server.url}/healthz").status_code == 200


def test_an_upload_without_content_length_is_cut_off_at_the_limit(server: LiveServer) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        yield (
            b'--x\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n"
        )
        chunk = b"\0" * (1024 * 1024)
        for _ in range(40):  # 40 MB, if the server read it all
            sent += len(chunk)
            yield chunk

    with server.client() as client:
        try:
            response = client.post(
                "/api/v1/search",
                content=chunks(),
                headers={"content-type": "multipart/form-data; boundary=x"},
            )
        except httpx.TransportError:
            # The server answered and closed while the client was still sending: also a cut.
            assert sent < 40 * 1024 * 1024
            return
    assert_problem(response, 413, "larger than")


def test_an_internal_error_is_a_problem_without_a_traceback(fresh_server: LiveServer) -> None:
    """A stored image damaged on disk: its thumbnail cannot be made. The client gets a generic
    500 problem; the details go to the log only."""
    with fresh_server.client() as client:
        product = client.get("/api/v1/products/footwear_0003").json()
        name = product["images"][0]["file_name"]
        (fresh_server.engine.media.root / name).write_bytes(b"not an image any more")
        response = client.get(f"/media/{name}", params={"w": 160})
    body = assert_problem(response, 500, "something went wrong")
    assert body["type"] == "/problems/internal"
    assert "Error" not in response.text and "File" not in response.text


def test_client_address_behind_a_trusted_proxy() -> None:
    from starlette.requests import Request

    from lookalike.limits import user_ref
    from web.limits import client_address

    def request(peer: str, forwarded: str | None) -> Request:
        headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
        return Request({"type": "http", "client": (peer, 1234), "headers": headers})

    proxies = ("10.0.0.2",)
    assert client_address(request("203.0.113.9", "198.51.100.1"), proxies) == "203.0.113.9"
    assert client_address(request("10.0.0.2", "198.51.100.1"), proxies) == "198.51.100.1"
    spoofed = request("10.0.0.2", "1.2.3.4, 198.51.100.7")  # the client wrote the first one
    assert client_address(spoofed, proxies) == "198.51.100.7"
    assert client_address(request("10.0.0.2", None), proxies) == "10.0.0.2"
    ref = user_ref(b"key", "198.51.100.7", source="web")
    assert ref.startswith("web:") and "198.51.100.7" not in ref and len(ref) <= 64
    assert ref != user_ref(b"other key", "198.51.100.7", source="web")
