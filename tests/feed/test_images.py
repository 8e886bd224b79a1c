"""Photo downloads: conditional requests through the SSRF-safe fetcher, retries of failures
that may pass, giving up a host that keeps timing out, results in the order they finish."""

from __future__ import annotations

import pytest

from bench.fake_shop import Served, ShopServer
from feed.diff import ImageJob, StoredImage
from feed.images import HOST_FAILURE_LIMIT, FetchOptions, download, fetch_with_retries
from search.urlfetch import UrlFetchError, fetch_image_conditional
from tests.images import encode, photo_like

PHOTO = encode(photo_like(seed=1), "JPEG")
OPTIONS = FetchOptions(
    max_bytes=1 << 20, timeout_seconds=1.0, allow_private=True, retries=2, backoff_seconds=0.01
)


@pytest.fixture
def server() -> ShopServer:
    shop = ShopServer()
    shop.files["/img/a.jpg"] = Served(PHOTO)
    yield shop
    shop.stop()


def job(url: str, conditional: StoredImage | None = None) -> ImageJob:
    return ImageJob(sku="A", url=url, position=0, conditional=conditional, new_product=False)


async def test_a_conditional_request_gets_304_without_the_body(server: ShopServer) -> None:
    url = server.base + "/img/a.jpg"
    first = await fetch_image_conditional(url, max_bytes=1 << 20, timeout=2, allow_private=True)
    assert first.data == PHOTO and first.etag
    again = await fetch_image_conditional(
        url, max_bytes=1 << 20, timeout=2, allow_private=True, etag=first.etag
    )
    assert again.not_modified and again.etag == first.etag
    assert server.full["/img/a.jpg"] == 1 and server.not_modified["/img/a.jpg"] == 1
    server.files["/img/a.jpg"] = Served(PHOTO + b"\x00")
    changed = await fetch_image_conditional(
        url, max_bytes=1 << 20, timeout=2, allow_private=True, etag=first.etag
    )
    assert changed.data == PHOTO + b"\x00"


async def test_loopback_stays_refused_without_the_option(server: ShopServer) -> None:
    with pytest.raises(UrlFetchError, match="private or local"):
        await fetch_image_conditional(
            server.base + "/img/a.jpg", max_bytes=1 << 20, timeout=2, allow_private=False
        )


async def test_server_errors_are_retried_and_client_errors_are_not(server: ShopServer) -> None:
    server.files["/img/broken.jpg"] = Served(b"oops", status=503)
    result = await fetch_with_retries(job(server.base + "/img/broken.jpg"), OPTIONS)
    assert result.error == "the server answered with HTTP status 503"
    assert server.full["/img/broken.jpg"] == 3  # the first attempt and two retries
    result = await fetch_with_retries(job(server.base + "/img/gone.jpg"), OPTIONS)
    assert result.error == "the server answered with HTTP status 404"


async def test_a_hanging_host_delays_only_its_own_photos(server: ShopServer) -> None:
    """Twenty photos on a host that never answers (localhost), ten on one that works
    (127.0.0.1), interleaved: every working photo arrives, and the hanging host is given up
    after a few timeouts instead of being asked twenty times."""
    hanging = f"http://localhost:{server.port}/hang/"
    jobs = []
    for n in range(20):
        jobs.append(job(f"{hanging}{n}.jpg"))
        if n % 2:
            jobs.append(job(server.base + "/img/a.jpg"))
    options = FetchOptions(max_bytes=1 << 20, timeout_seconds=1.0, allow_private=True, retries=0)
    results = [result async for result in download(jobs, options, concurrency=4)]
    assert len(results) == 30
    assert sum(1 for r in results if r.fetched is not None and r.fetched.data == PHOTO) == 10
    errors = [r.error or "" for r in results if r.fetched is None]
    assert sum("did not send the image within 1 s" in e for e in errors) >= HOST_FAILURE_LIMIT
    assert sum("keeps failing; skipped" in e for e in errors) >= 20 - HOST_FAILURE_LIMIT - 4
    assert server.hung <= HOST_FAILURE_LIMIT + 4 - 1
