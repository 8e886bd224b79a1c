"""The catalogue write API behind API keys: keys made with `python -m web api-key ...` (the
`lookalike api-key` commands), every auth failure, each write and its audit entry, the
per-key write limit."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from db.tables import ApiKey, AuditEntry
from lookalike.settings import Settings
from search.featurize.featurizer import Featurizer
from tests import images
from tests.conftest import REPO_ROOT, settings_env
from tests.web.conftest import copy_catalog
from tests.web.server import LiveServer, live_server
from tests.web.test_search_api import assert_problem, search
from web.config import WebConfig


def web_command(settings: Settings, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = settings_env(settings)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "web", *args],
        env=env,
        cwd=cwd,  # no .env there
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def create_key(settings: Settings, name: str, cwd: Path) -> str:
    done = web_command(settings, "api-key", "create", name, cwd=cwd)
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip().splitlines()[-1]
    assert secret.startswith("lk_") and len(secret) > 40
    return secret


@dataclass
class Shop:
    server: LiveServer
    settings: Settings
    secret: str
    cwd: Path

    def client(self, secret: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {secret or self.secret}"}
        return self.server.client(headers=headers)

    def audit(self) -> list[AuditEntry]:
        with self.server.engine.sessions() as session:
            return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


@pytest.fixture
def shop(
    request: pytest.FixtureRequest,
    web_catalog: Path,
    tmp_path: Path,
    models_dir: Path,
    extractor: Featurizer,
) -> Iterator[Shop]:
    """A server over a private catalogue copy and one key; writes a minute: the param (100)."""
    settings = copy_catalog(web_catalog, tmp_path / "db", models_dir)
    secret = create_key(settings, "back-office", tmp_path)
    config = WebConfig(writes_per_minute=getattr(request, "param", 100))
    with live_server(settings, extractor, config) as running:
        yield Shop(server=running, settings=settings, secret=secret, cwd=tmp_path)


def new_photo(seed: int) -> bytes:
    return images.encode(images.photo_like(240, 200, seed=seed), "JPEG", quality=92)


def create(client: httpx.Client, photo: bytes, **fields: str) -> httpx.Response:
    return client.post(
        "/api/v1/products", files={"photo": ("p.jpg", photo, "image/jpeg")}, data=fields
    )


def test_api_keys_are_stored_hashed_and_listed_without_the_secret(shop: Shop) -> None:
    with shop.server.engine.sessions() as session:
        [row] = session.scalars(select(ApiKey)).all()
    import hashlib

    assert row.secret_hash == hashlib.sha256(shop.secret.encode()).hexdigest()
    assert shop.secret not in (row.name, row.prefix) and shop.secret.startswith(row.prefix)
    listed = web_command(shop.settings, "api-key", "list", cwd=shop.cwd)
    assert listed.returncode == 0 and "back-office" in listed.stdout and "active" in listed.stdout
    assert shop.secret not in listed.stdout
    duplicate = web_command(shop.settings, "api-key", "create", "back-office", cwd=shop.cwd)
    assert duplicate.returncode == 2 and "already exists" in duplicate.stdout
    unknown = web_command(shop.settings, "api-key", "revoke", "nobody", cwd=shop.cwd)
    assert unknown.returncode == 2 and "no API key" in unknown.stdout


def test_every_auth_failure_is_401_and_audited(shop: Shop) -> None:
    url = "/api/v1/products/footwear_0001"
    with shop.server.client() as anonymous:
        for headers, words in (
            ({}, ["API key"]),
            ({"Authorization": "Basic dXNlcjpwYXNz"}, ["Bearer"]),
            ({"Authorization": "Bearer"}, ["Bearer"]),
            ({"Authorization": "Bearer lk_not-a-real-key"}, ["not valid"]),
            ({"Authorization": f"Bearer {shop.secret}x"}, ["not valid"]),
        ):
            response = anonymous.delete(url, headers=headers)
            assert_problem(response, 401, *words)
            assert response.headers["www-authenticate"].startswith("Bearer")
        # Nothing was removed.
        assert anonymous.get(url).status_code == 200
    refused = [entry for entry in shop.audit() if entry.outcome == "refused"]
    assert len(refused) == 5 and {entry.user_id for entry in refused} == {0}

    revoked = web_command(shop.settings, "api-key", "revoke", "back-office", cwd=shop.cwd)
    assert revoked.returncode == 0, revoked.stderr
    with shop.client() as client:
        assert_problem(client.delete(url), 401, "not valid")
    listed = web_command(shop.settings, "api-key", "list", cwd=shop.cwd)
    assert "revoked" in listed.stdout


@pytest.mark.parametrize("shop", [3], indirect=True)
def test_a_flood_of_bad_keys_is_limited_and_does_not_fill_the_audit_log(shop: Shop) -> None:
    url = "/api/v1/products/footwear_0001"
    with shop.server.client() as anonymous:
        for _ in range(3):  # the address's refused attempts a minute: the write limit
            assert_problem(anonymous.delete(url, headers={"Authorization": "Bearer lk_x"}), 401)
        for _ in range(2):
            response = anonymous.delete(url, headers={"Authorization": "Bearer lk_y"})
            assert_problem(response, 429, "refused attempts")
            assert int(response.headers["retry-after"]) >= 1
        assert anonymous.get(url).status_code == 200  # nothing was removed
    assert [entry.outcome for entry in shop.audit()] == ["refused"] * 3
    # The shop's own key still works: refusals count against the address only when refused,
    # and a valid key's writes are limited per key.
    with shop.client() as client:
        assert client.post(f"{url}/restore").status_code == 200


def test_create_a_product_then_change_it_every_way(shop: Shop) -> None:
    photo = new_photo(seed=7)
    with shop.client() as client:
        made = create(
            client, photo, sku="NEW-1", name="Test runner", price="12.50", category="sneaker"
        )
        assert made.status_code == 201, made.text
        product = made.json()["product"]
        assert product["sku"] == "NEW-1" and product["price"] == "12.50"
        assert product["currency"] == "EUR" and len(product["images"]) == 1
        # Searchable at once: its own photo finds it first.
        found = search(client, photo, all_categories="true").json()["results"]
        assert found[0]["sku"] == "NEW-1"

        assert_problem(create(client, photo, sku="NEW-1", name="Again"), 409, "already exists")
        assert_problem(create(client, photo, sku="NEW-2", name="X", price="abc"), 422, "price")
        assert_problem(create(client, images.minimal_pdf(), sku="NEW-3", name="Pdf"), 422)
        assert client.get("/api/v1/products/NEW-3").status_code == 404  # nothing stored
        tiny = images.encode(images.solid("RGB", (1, 1), (200, 30, 30)), "PNG")
        refused = create(client, tiny, sku="NEW-4", name="Dot")
        assert_problem(refused, 422, "The photo is 1x1 pixels: a product photo needs at least 64")
        assert client.get("/api/v1/products/NEW-4").status_code == 404

        second = client.post(
            "/api/v1/products/NEW-1/photos",
            files={"photo": ("b.jpg", new_photo(seed=8), "image/jpeg")},
        )
        assert second.status_code == 201, second.text
        assert len(second.json()["product"]["images"]) == 2
        assert_problem(
            client.post(
                "/api/v1/products/NOPE/photos", files={"photo": ("b.jpg", photo, "image/jpeg")}
            ),
            404,
            "NOPE",
        )

        changed = client.patch(
            "/api/v1/products/NEW-1", json={"price": "9.99", "name": "Cheap runner"}
        )
        assert changed.status_code == 200 and changed.json()["changed"] is True
        assert client.get("/api/v1/products/NEW-1").json()["price"] == "9.99"
        assert_problem(client.patch("/api/v1/products/NEW-1", json={"url": "ftp://x"}), 422, "URL")
        # A product always has a name and a currency: null is refused, not a 500.
        for field in ("name", "currency"):
            refused = client.patch("/api/v1/products/NEW-1", json={field: None})
            assert_problem(refused, 422, field)
        # null clears what may be absent, as the schema documents.
        cleared = client.patch("/api/v1/products/NEW-1", json={"price": None, "category": None})
        assert cleared.status_code == 200, cleared.text
        assert cleared.json()["product"]["price"] is None
        assert cleared.json()["product"]["name"] == "Cheap runner"

        # An admin's colour (a feed-style word is understood) wins over the computed one.
        recoloured = client.patch("/api/v1/products/NEW-1", json={"colour": "Burgundy"})
        assert recoloured.status_code == 200 and recoloured.json()["product"]["colour"] == "red"
        assert client.get("/api/v1/products/NEW-1").json()["colour"] == "red"
        unknown = client.patch("/api/v1/products/NEW-1", json={"colour": "sparkly"})
        assert_problem(unknown, 422, "unknown colour")

    entries = [entry for entry in shop.audit() if entry.outcome == "ok"]
    actions = ["web_add", "web_add_photo", "web_update", "web_update", "web_update"]
    assert [entry.action for entry in entries] == actions
    key_id = entries[0].details["api_key_id"]
    assert {entry.user_id for entry in entries} == {-key_id}
    assert {entry.details["api_key_name"] for entry in entries} == {"back-office"}
    failed = [entry for entry in shop.audit() if entry.outcome == "failed"]
    assert len(failed) >= 3 and all("reason" in entry.details for entry in failed)


@pytest.mark.parametrize("shop", [4], indirect=True)
def test_stock_remove_restore_and_the_write_limit(shop: Shop, query_photo: bytes) -> None:
    sku = "footwear_0001"
    path = f"/api/v1/products/{sku}"
    with shop.client() as client:
        out = client.put(f"{path}/stock", json={"in_stock": False})
        assert out.status_code == 200 and out.json()["product"]["in_stock"] is False
        shown = client.get(path).json()  # still shown, as out of stock
        assert shown["in_stock"] is False
        similar = client.get("/api/v1/products/footwear_0002/similar?k=50").json()
        assert sku not in [item["sku"] for item in similar["search"]["results"]]
        back = client.put(f"{path}/stock", json={"in_stock": True})
        assert back.json()["product"]["in_stock"] is True

        removed = client.delete(path)
        assert removed.status_code == 200 and removed.json()["product"]["removed"] is True
        assert client.get(path).status_code == 404
        similar = client.get("/api/v1/products/footwear_0002/similar?k=50").json()
        assert sku not in [item["sku"] for item in similar["search"]["results"]]
        restored = client.post(f"{path}/restore")
        assert restored.status_code == 200 and restored.json()["product"]["removed"] is False
        assert client.get(path).status_code == 200

        # That was 4 writes: the limit of this key (4 a minute here).
        limited = client.delete(path)
        assert_problem(limited, 429, "too many")
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert client.get(path).status_code == 200  # the refused write did nothing
    actions = [(entry.action, entry.outcome) for entry in shop.audit()]
    assert actions == [
        ("web_stock_out", "ok"),
        ("web_stock_in", "ok"),
        ("web_remove", "ok"),
        ("web_restore", "ok"),
        ("web_remove", "refused"),
    ]
    # Customers' searches are not writes: still allowed.
    with shop.server.client() as customer:
        assert search(customer, query_photo).status_code == 200


def test_the_admin_apis_problems_follow_accept_language(shop: Shop) -> None:
    """404, 405, 409, 422 and 401 in the request's language, named by Content-Language; the
    audit trail keeps English."""
    spanish, russian = {"Accept-Language": "es-ES,es;q=0.9"}, {"Accept-Language": "ru"}
    existing = shop.server.engine.catalog.find("", limit=1)[0].sku
    with shop.client() as client:
        gone = client.delete("/api/v1/products/NOPE-404", headers=spanish)
        assert assert_problem(gone, 404)["detail"] == "no existe el producto 'NOPE-404'"
        assert gone.headers["content-language"] == "es"
        assert shop.audit()[-1].details["reason"] == "there is no product with SKU 'NOPE-404'"
        again = client.post(
            "/api/v1/products",
            files={"photo": ("p.jpg", new_photo(seed=3), "image/jpeg")},
            data={"sku": existing, "name": "Again", "price": "10"},
            headers=spanish,
        )
        assert assert_problem(again, 409)["detail"] == f"el producto {existing} ya existe"
        stock = client.put("/api/v1/products/NOPE/stock", json={"in_stock": "?"}, headers=russian)
        assert assert_problem(stock, 422)["detail"] == "in_stock: должно быть true или false"
        assert stock.headers["content-language"] == "ru"
        wrong = client.put("/api/v1/categories", headers=spanish)
        assert assert_problem(wrong, 405)["detail"] == (
            "PUT no está permitido en /api/v1/categories"
        )
        nowhere = client.get("/api/v1/nowhere", headers=russian)
        assert assert_problem(nowhere, 404)["detail"] == "по адресу /api/v1/nowhere ничего нет"
        english = client.delete("/api/v1/products/NOPE-404")
        assert assert_problem(english, 404)["detail"] == "there is no product 'NOPE-404'"
        assert english.headers["content-language"] == "en"
    with shop.server.client() as anonymous:
        refused = anonymous.delete("/api/v1/products/NOPE-404", headers=spanish)
        assert assert_problem(refused, 401)["detail"] == (
            "hace falta una clave de API: envíala como «Authorization: Bearer <key>»"
        )
