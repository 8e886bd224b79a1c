"""Public catalogue reads and product images: GET /api/v1/products/{sku}, .../similar,
/api/v1/categories, /media/{name} (caching headers, ETag, thumbnails, names checked)."""

from __future__ import annotations

import csv
import http.client
import io
import json
from pathlib import Path

from PIL import Image

from tests.web.server import LiveServer
from tests.web.test_search_api import assert_problem

SKU = "footwear_0001"  # "Black rain boot 0001", 67.99 EUR, rain_boot (products.csv)


def test_a_product(server: LiveServer) -> None:
    with server.client() as client:
        response = client.get(f"/api/v1/products/{SKU}")
        assert response.status_code == 200
        product = response.json()
        assert product["name"] == "Black rain boot 0001"
        assert product["price"] == "67.99" and product["currency"] == "EUR"
        assert product["category"] == "rain_boot" and product["removed"] is False
        assert product["colour"] == "black"  # computed from its photo
        assert product["url"] == "https://shop.example/products/footwear_0001"
        [image] = product["images"]
        assert image["url"].startswith(f"{server.url}/media/")
        assert client.get(image["url"]).status_code == 200
        assert_problem(client.get("/api/v1/products/nope"), 404, "nope")


def test_similar_products_exclude_the_product_itself(server: LiveServer) -> None:
    with server.client() as client:
        body = client.get(f"/api/v1/products/{SKU}/similar", params={"k": 5}).json()
        assert body["product"]["sku"] == SKU
        skus = [item["sku"] for item in body["search"]["results"]]
        assert len(skus) == 5 and SKU not in skus
        assert all(item["colour"] for item in body["search"]["results"])
        assert body["search"]["category_inferred"] is False
        assert_problem(client.get("/api/v1/products/nope/similar"), 404, "nope")
        assert_problem(client.get(f"/api/v1/products/{SKU}/similar?k=0"), 422, "k")


def test_categories(server: LiveServer, footwear: Path) -> None:
    with (footwear / "products.csv").open(newline="") as handle:
        in_csv = sorted({row["category"] for row in csv.DictReader(handle)})
    with server.client() as client:
        body = client.get("/api/v1/categories").json()
    assert body["categories"] == in_csv and len(in_csv) > 1


def _image_url(server: LiveServer) -> str:
    with server.client() as client:
        return str(client.get(f"/api/v1/products/{SKU}").json()["images"][0]["url"])


def test_media_is_cached_for_a_year_with_an_etag(server: LiveServer) -> None:
    url = _image_url(server)
    content_hash = url.rsplit("/", 1)[1].split(".")[0]
    with server.client() as client:
        response = client.get(url)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["etag"] == f'"{content_hash}"'
        import hashlib

        assert hashlib.sha256(response.content).hexdigest() == content_hash
        again = client.get(url, headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        other = client.get(url, headers={"If-None-Match": '"something-else"'})
        assert other.status_code == 200


def test_thumbnails_at_fixed_widths(server: LiveServer) -> None:
    url = _image_url(server)
    with server.client() as client:
        thumb = client.get(url, params={"w": 160})
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert thumb.headers["etag"].endswith('-w160"')
        with Image.open(io.BytesIO(thumb.content)) as image:
            assert image.width == 160
        assert_problem(client.get(url, params={"w": 161}), 422, "160, 320, 640")


def test_media_names_never_reach_the_file_system_unchecked(server: LiveServer) -> None:
    missing = "ab/" + "ab" * 32 + ".jpg"
    with server.client() as client:
        for name in (
            "../lookalike.db",
            "..%2Flookalike.db",
            "%2e%2e/%2e%2e/etc/passwd",
            "ab/../../lookalike.db",
            missing,
            "AB/" + "AB" * 32 + ".jpg",
            ".tmp/x.part",
        ):
            response = client.get(f"/media/{name}")
            assert response.status_code == 404, name
            assert response.headers["content-type"].startswith("application/problem+json")
    # httpx removes dot segments ("/media/../x" becomes "/x", which never reaches /media):
    # sent as written, every probe reaches the media route and is refused by its name check.
    for name in ("../lookalike.db", "ab/../../lookalike.db", "./../lookalike.db", "..", "ab/.."):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            connection.request("GET", f"/media/{name}")
            answer = connection.getresponse()
            body = json.loads(answer.read())
        finally:
            connection.close()
        assert answer.status == 404 and body["detail"].startswith("there is no image"), body
