"""HTTP as integrators' tools use it: HEAD, 405 with the path's every method in Allow, error
answers documented as problem+json in the OpenAPI document, a refused CORS preflight as a
problem, If-None-Match: *, security headers, and /docs without any third-party host."""

from __future__ import annotations

import re

from tests.web.server import LiveServer
from tests.web.test_search_api import PROBLEM, assert_problem

SKU_PATH = "/api/v1/products/footwear_0001"


def test_head_answers_wherever_get_does_without_a_body(server: LiveServer) -> None:
    with server.client() as client:
        for path in ("/healthz", SKU_PATH, "/", "/openapi.json"):
            got = client.get(path)
            head = client.head(path)
            assert head.status_code == 200 == got.status_code, path
            assert head.content == b""
            assert head.headers["content-type"] == got.headers["content-type"]
            assert head.headers["content-length"] == str(len(got.content)), path


def test_405_allow_names_every_method_of_the_path(server: LiveServer) -> None:
    with server.client() as client:
        refused = client.put(SKU_PATH)
        assert_problem(refused, 405, "PUT")
        allowed = {method.strip() for method in refused.headers["allow"].split(",")}
        assert allowed == {"GET", "HEAD", "PATCH", "DELETE"}
        health = client.post("/healthz")
        assert_problem(health, 405)
        assert health.headers["allow"] == "GET, HEAD"


def test_every_error_status_is_documented_as_problem_json(server: LiveServer) -> None:
    with server.client() as client:
        document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert "Problem" in schemas and "HTTPValidationError" not in schemas
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status in ("400", "404", "422", "500"):
                content = operation["responses"][status]["content"]
                assert content[PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}, (
                    path,
                    method,
                    status,
                )
    search = document["paths"]["/api/v1/search"]["post"]["responses"]
    assert {"413", "415", "429"} <= set(search)
    write = document["paths"]["/api/v1/products/{sku}"]["patch"]["responses"]
    assert {"401", "409", "429"} <= set(write)
    assert "503" in document["paths"]["/readyz"]["get"]["responses"]


def test_a_refused_preflight_is_a_problem(server: LiveServer) -> None:
    with server.client() as client:
        refused = client.options(
            "/api/v1/search",
            headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
        )
    assert_problem(refused, 400, "https://shop.example", "origin")
    assert "access-control-allow-origin" not in refused.headers


def test_if_none_match_star_is_not_modified(server: LiveServer) -> None:
    with server.client() as client:
        image_url = client.get(SKU_PATH).json()["images"][0]["url"]
        assert client.get(image_url, headers={"If-None-Match": "*"}).status_code == 304
        assert client.get(image_url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_security_headers_and_docs_served_locally(server: LiveServer) -> None:
    with server.client() as client:
        for path in ("/healthz", SKU_PATH, "/", "/docs", "/api/v1/products/nope"):
            assert client.get(path).headers["x-content-type-options"] == "nosniff", path
        assert "default-src 'none'" in client.get(SKU_PATH).headers["content-security-policy"]
        page_policy = client.get("/").headers["content-security-policy"]
        script_src = re.search(r"script-src ([^;]*)", page_policy)
        assert script_src is not None and "'sha256-" in script_src.group(1)
        assert "unsafe-inline" not in page_policy
        docs = client.get("/docs")
        assert docs.status_code == 200
        sources = re.findall(r"""(?:src|href)=["']([^"']+)["']""", docs.text)
        assert sources and all(source.startswith("/") for source in sources), sources
        for source in sources:
            asset = client.get(source)
            assert asset.status_code == 200 and len(asset.content) > 1000, source
