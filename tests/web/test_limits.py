"""The per-address limit covers every request that costs a search or writes a customer's row:
uploads (checked before the body is read), lookalikes of a product (each is a ranked, logged
search) and votes. The fresh server allows 3 a minute."""

from __future__ import annotations

from tests.web.server import LiveServer
from tests.web.test_search_api import assert_problem, search

SIMILAR = "/api/v1/products/footwear_0001/similar"


def test_an_upload_past_the_limit_is_refused_before_its_body_is_read(
    fresh_server: LiveServer, query_photo: bytes
) -> None:
    with fresh_server.client() as client:
        for _ in range(3):
            assert search(client, query_photo).status_code == 200
        # Not an image, and not multipart: answered 429, not 415, so nothing was parsed.
        refused = client.post(
            "/api/v1/search", content=b"%PDF-1.4", headers={"Content-Type": "application/pdf"}
        )
        assert_problem(refused, 429, "too many searches")


def test_lookalikes_of_a_product_count_as_searches(fresh_server: LiveServer) -> None:
    with fresh_server.client() as client:
        for _ in range(3):
            assert client.get(SIMILAR).status_code == 200
        limited = client.get(SIMILAR)
        assert_problem(limited, 429, "too many searches")
        assert 1 <= int(limited.headers["retry-after"]) <= 60


def test_votes_are_limited_per_address(fresh_server: LiveServer, query_photo: bytes) -> None:
    with fresh_server.client() as client:
        share_token = search(client, query_photo).json()["share_token"]
        url = f"/api/v1/searches/{share_token}/feedback"
        for vote in (1, -1, 1):
            assert client.post(url, json={"vote": vote}).status_code == 200
        assert_problem(client.post(url, json={"vote": -1}), 429, "too many votes")
