"""POST /api/v1/search (upload and image URL) with its filters, shared result sets, feedback,
and every kind of bad input: always problem+json with a clear message."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from search import Requester, SearchQuery
from tests import images
from tests.web.imagehost import image_host
from tests.web.server import LiveServer

PROBLEM = "application/problem+json"


def search(client: httpx.Client, photo: bytes, **fields: str) -> httpx.Response:
    return client.post(
        "/api/v1/search", files={"photo": ("photo.jpg", photo, "image/jpeg")}, data=fields
    )


def assert_problem(response: httpx.Response, status: int, *words: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("/problems/")
    assert "Traceback" not in response.text
    for word in words:
        assert word.lower() in str(body["detail"]).lower(), body
    return dict(body)


def test_upload_gives_eight_ranked_products_with_everything_a_card_needs(
    server: LiveServer, query_photo: bytes
) -> None:
    with server.client() as client:
        response = search(client, query_photo)
        assert response.status_code == 200, response.text
        body = response.json()
        results = body["results"]
        assert [item["rank"] for item in results] == list(range(1, 9))
        similarities = [item["similarity"] for item in results]
        assert similarities == sorted(similarities, reverse=True)
        first = results[0]
        assert set(first) >= {"sku", "name", "price", "currency", "url", "category"}
        assert first["in_stock"] is True and Decimal(first["price"]) > 0
        # Category inference is on by default: every result is in the inferred category.
        assert body["category_inferred"] is True
        assert {item["category"] for item in results} == {body["category"]}
        assert body["search_id"] > 0 and body["share_token"]
        assert body["share_url"] == f"{server.url}/?s={body['share_token']}"
        assert body["timing"]["total_ms"] >= body["timing"]["engine_ms"] > 0
        image = client.get(first["image_url"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"


def test_the_api_ranks_like_the_command_line_search(server: LiveServer, query_photo: bytes) -> None:
    with server.client() as client:
        through_api = [item["sku"] for item in search(client, query_photo).json()["results"]]
        by_category = search(client, query_photo, category="heel", k="5").json()["results"]
    engine = server.engine
    cli = engine.searcher.search_image(query_photo, SearchQuery(), Requester("cli", "cli"))
    assert through_api == [item.product.sku for item in cli.items]
    cli_heel = engine.searcher.search_image(
        query_photo, SearchQuery(category="heel", k=5), Requester("cli", "cli")
    )
    assert [item["sku"] for item in by_category] == [i.product.sku for i in cli_heel.items]


def test_filters_category_price_metric_k_and_all_categories(
    server: LiveServer, query_photo: bytes
) -> None:
    with server.client() as client:
        heels = search(client, query_photo, category="heel", k="4").json()
        assert heels["category"] == "heel" and heels["category_inferred"] is False
        assert len(heels["results"]) == 4
        assert {item["category"] for item in heels["results"]} == {"heel"}

        cheap = search(client, query_photo, max_price="50.00", all_categories="true").json()
        assert cheap["results"] and cheap["category_inferred"] is False
        assert all(Decimal(item["price"]) <= Decimal("50.00") for item in cheap["results"])
        assert len({item["category"] for item in cheap["results"]}) > 1  # not restricted

        euclid = search(client, query_photo, metric="euclidean").json()
        assert euclid["metric"] == "euclidean" and len(euclid["results"]) == 8


def test_a_colour_asked_for_comes_first(server: LiveServer, query_photo: bytes) -> None:
    with server.client() as client:
        shown = search(client, query_photo, all_categories="true").json()["results"]
        black = search(client, query_photo, colour="Black", all_categories="true").json()
        assert black["results"][0]["colour"] == "black" != shown[0]["colour"]
        assert [item["colour"] for item in black["results"]].count("black") > [
            item["colour"] for item in shown
        ].count("black")
        assert_problem(search(client, query_photo, colour="sparkly"), 422, "unknown colour")


def test_cheaper_than_a_product(server: LiveServer, query_photo: bytes) -> None:
    with server.client() as client:
        first = search(client, query_photo).json()["results"][0]
        cheaper = search(client, query_photo, cheaper_than=first["sku"]).json()
        limit = Decimal(first["price"]) - Decimal("0.01")
        assert cheaper["max_price"] == str(limit)
        assert cheaper["results"], "the catalogue has cheaper lookalikes"
        assert all(Decimal(item["price"]) <= limit for item in cheaper["results"])
        assert first["sku"] not in [item["sku"] for item in cheaper["results"]]
        missing = search(client, query_photo, cheaper_than="no-such-sku")
        assert_problem(missing, 404, "no-such-sku")


def test_search_by_image_url_ranks_like_the_upload(server: LiveServer, query_photo: bytes) -> None:
    files = {"/shoe.jpg": ("image/jpeg", query_photo), "/page": ("text/html", b"<html></html>")}
    with image_host(files) as host, server.client() as client:
        by_url = client.post("/api/v1/search", json={"image_url": f"{host}/shoe.jpg"})
        assert by_url.status_code == 200, by_url.text
        uploaded = search(client, query_photo).json()
        assert [r["sku"] for r in by_url.json()["results"]] == [
            r["sku"] for r in uploaded["results"]
        ]
        assert_problem(
            client.post("/api/v1/search", json={"image_url": f"{host}/page"}),
            422,
            "not an image",
        )
        assert_problem(
            client.post("/api/v1/search", json={"image_url": f"{host}/gone.jpg"}),
            422,
            "404",
        )
        assert_problem(
            client.post("/api/v1/search", json={"image_url": "ftp://example.com/a.jpg"}), 422
        )


def test_shared_result_set_and_feedback(server: LiveServer, query_photo: bytes) -> None:
    with server.client() as client:
        made = search(client, query_photo, category="sneaker").json()
        shared = client.get(f"/api/v1/searches/{made['share_token']}")
        assert shared.status_code == 200
        assert [r["sku"] for r in shared.json()["results"]] == [r["sku"] for r in made["results"]]
        assert shared.json()["search_id"] == made["search_id"]
        # A made-up token and one whose search is gone look the same: not found, with why
        # an old link may have stopped working.
        assert_problem(client.get("/api/v1/searches/nosuchtoken123"), 404, "no such", "days")
        assert_problem(client.get("/api/v1/searches/bad%20token!"), 404)

        # A vote names the result set by its unguessable token, not its sequential id.
        vote = client.post(f"/api/v1/searches/{made['share_token']}/feedback", json={"vote": 1})
        assert vote.status_code == 200 and vote.json()["recorded"] is True
        assert vote.json()["search_id"] == made["search_id"]
        again = client.post(f"/api/v1/searches/{made['share_token']}/feedback", json={"vote": -1})
        assert again.json()["vote"] == -1
        by_id = client.post(f"/api/v1/searches/{made['search_id']}/feedback", json={"vote": 1})
        assert_problem(by_id, 404, "no such results")
        assert_problem(client.post("/api/v1/searches/bad%20token!/feedback", json={"vote": 1}), 404)
        assert_problem(
            client.post(f"/api/v1/searches/{made['share_token']}/feedback", json={"vote": 5}),
            422,
            "vote",
        )
    from sqlalchemy import select

    from db.tables import Feedback

    with server.engine.sessions() as session:
        votes = session.scalars(
            select(Feedback.vote).where(Feedback.search_id == made["search_id"])
        ).all()
    assert votes == [-1]  # one vote per person, the second replaced the first


@pytest.mark.parametrize(
    ("photo", "status", "words"),
    [
        (b"", 422, ["empty"]),
        (images.truncated(images.encode(images.photo_like(64, 64), "JPEG")), 422, []),
        (images.minimal_pdf(), 422, ["pdf"]),
        (images.plain_text(), 422, []),
        (images.huge_black_png(20000, 20000), 422, ["pixels"]),
        (images.jpeg_declaring_size(30000, 30000), 422, ["pixels"]),
    ],
    ids=["zero-bytes", "truncated", "pdf", "text", "png-bomb", "jpeg-claiming-huge"],
)
def test_bad_photos_get_a_clear_problem(
    server: LiveServer, photo: bytes, status: int, words: list[str]
) -> None:
    with server.client() as client:
        body = assert_problem(search(client, photo), status, *words)
        assert body["type"] == "/problems/invalid-image"


def test_too_large_wrong_type_and_malformed_requests(
    server: LiveServer, query_photo: bytes
) -> None:
    with server.client() as client:
        huge = b"\xff\xd8\xff" + b"\0" * (25 * 1024 * 1024)
        assert_problem(search(client, huge), 413, "larger than 20 MB")
        assert_problem(
            client.post("/api/v1/search", content=b"hello", headers={"content-type": "text/plain"}),
            415,
            "multipart",
        )
        assert_problem(
            client.post(
                "/api/v1/search", files={"photo": ("a.pdf", query_photo, "application/pdf")}
            ),
            415,
            "application/pdf",
        )
        assert_problem(
            client.post("/api/v1/search", files={"picture": ("a.jpg", query_photo, "image/jpeg")}),
            422,
            "photo",
        )
        assert_problem(search(client, query_photo, k="0"), 422, "k")
        assert_problem(search(client, query_photo, metric="manhattan"), 422, "metric")
        assert_problem(search(client, query_photo, max_price="cheap"), 422, "max_price")
        # A form's fields are strings matching the documented patterns: not "yes" for true.
        assert_problem(search(client, query_photo, all_categories="yes"), 422, "all_categories")
        assert_problem(
            client.post(
                "/api/v1/search", content=b"{not json", headers={"content-type": "application/json"}
            ),
            422,
        )
        assert_problem(client.post("/api/v1/search", json={"image_url": "x", "bogus": 1}), 422)


def test_framework_errors_are_problems_too(server: LiveServer) -> None:
    with server.client() as client:
        assert_problem(client.get("/api/v1/nothing-here"), 404, "/api/v1/nothing-here")
        assert_problem(client.delete("/api/v1/search"), 405, "DELETE")
        assert_problem(client.get("/api/v1/products/x/similar?k=abc"), 422, "k")
