"""`lookalike db copy` between SQLite and PostgreSQL: every row of every table, field by field, the
copied catalogue searching like the source, bad URLs and copying onto itself refused in one line.
These run in every pass, SQLite's included: they use the session's embedded server
(tests/conftest.py: postgres_server) whatever the backend."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from cli.main import main
from db import migrate
from db.copy import copy_database, tables_in_copy_order
from db.database import create_db_engine
from db.embedded_pg import EmbeddedPostgres, free_port
from db.tables import (
    AdminDraft,
    ApiKey,
    AppSecret,
    AuditEntry,
    CatalogChange,
    Embedding,
    Feedback,
    FeedImage,
    FeedProduct,
    FeedRun,
    JobLease,
    Product,
    RateLimitEvent,
    ResultOpen,
    SearchDaily,
    SearchLog,
    UserLanguage,
)
from lookalike.settings import Settings
from search.featurize.featurizer import Featurizer
from tests.conftest import open_test_engine, settings_env
from tests.postgres_support import EVERY_TABLE, scratch_database


@pytest.fixture
def pg_url(postgres_server: EmbeddedPostgres) -> Iterator[str]:
    """A new, empty database on the session's server, dropped afterwards."""
    with scratch_database(postgres_server) as url:
        yield url


# ---- db copy -----------------------------------------------------------------------------------


def fill_every_table(engine: Engine) -> None:
    """Rows in the tables an import leaves empty, and a priced, removed product, so the copy
    has something of every kind to get right (NULLs, decimals, JSON, blobs, booleans)."""
    with Session(engine) as session, session.begin():
        first = session.scalars(select(Product).order_by(Product.id)).first()
        assert first is not None
        session.execute(
            update(Product)
            .where(Product.id == first.id)
            .values(price=Decimal("59.90"), category="boot", removed=True, url="https://s.ex/1")
        )
        search = SearchLog(
            user_ref="u-1",
            source="bot",
            query_hash="ab" * 32,
            model_name="vgg16_avgpool",
            filters={"category": "boot", "max_price": "60"},
            results=[{"product_id": first.id, "image_id": 1, "distance": 0.125}],
            best_distance=0.125,
            latency_ms=42.5,
            query_vector=np.arange(512, dtype="<f4").tobytes(),
            share_token="share-" + "x" * 20,
        )
        session.add(search)
        session.flush()
        session.add_all(
            [
                Feedback(search_id=search.id, user_ref="u-1", vote=-1),
                AuditEntry(user_id=1001, action="add", target="SKU-1", outcome="ok", details={}),
                ResultOpen(search_id=search.id, product_id=first.id, rank=1, user_ref="u-1"),
                CatalogChange(product_id=first.id),
                CatalogChange(product_id=None),
                RateLimitEvent(user_ref="u-1"),
                AdminDraft(user_id=1001, step="price", data={"sku": "N-1", "name": "New"}),
                SearchDaily(
                    day=date(2026, 8, 1),
                    model_name="vgg16_avgpool",
                    metric="cosine",
                    searches=3,
                    thumbs_up=1,
                    thumbs_down=0,
                    opens=2,
                    latency_ms_sum=127.5,
                    best_distance_buckets={"41": 2, "70": 1},
                ),
                ApiKey(name="back-office", secret_hash="cd" * 32, prefix="lk_abcd"),
                FeedProduct(sku=first.sku, hidden_by_feed=False),
                FeedImage(
                    sku=first.sku,
                    url_hash="ef" * 32,
                    url="https://shop.example/img/1.jpg",
                    etag='"v1"',
                    last_modified="Sun, 29 Nov 2026 08:00:00 GMT",
                    content_hash="01" * 32,
                ),
                FeedRun(
                    source="https://shop.example/feed.xml",
                    status="ok",
                    counts={"added": 1},
                    errors=[{"row": "line 3", "reason": "no id"}],
                ),
                JobLease(
                    name="feed-sync", holder="host:1", expires_at=datetime(2026, 11, 29, tzinfo=UTC)
                ),
                AppSecret(name="web-user-ref", value=bytes(range(32))),
                UserLanguage(user_ref="u-1", language="fa"),
            ]
        )
        # The post-processed vectors the searches compare: whatever the engine stored, and a
        # value for any row it has not computed yet.
        for embedding in session.scalars(select(Embedding).where(Embedding.index_vector.is_(None))):
            embedding.index_vector = np.sqrt(np.frombuffer(embedding.vector, dtype="<f4"))


def comparable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return ("float32", value.astype("<f4").tobytes())
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, datetime):  # SQLite keeps UTC without its offset
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def every_row(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as connection:
        for table in tables_in_copy_order():
            result = connection.execute(select(table).order_by(*table.primary_key.columns))
            rows[table.name] = [
                {key: comparable(value) for key, value in row._mapping.items()} for row in result
            ]
    return rows


@pytest.fixture
def sqlite_catalogue(catalog_settings: Settings, tmp_path: Path) -> Settings:
    """The imported 300-product catalogue as a SQLite file, every table holding rows. In the
    PostgreSQL pass the imported catalogue lives in PostgreSQL: copied to SQLite first (so
    that direction is exercised too)."""
    settings = catalog_settings
    if not settings.database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'source' / 'lookalike.db'}"
        source, target = create_db_engine(settings.database_url), create_db_engine(url)
        counts = copy_database(source, target, progress=False)
        assert counts["products"] == 300
        source.dispose()
        target.dispose()
        settings = settings.model_copy(update={"database_url": url})
    engine = create_db_engine(settings.database_url)
    fill_every_table(engine)
    engine.dispose()
    return settings


def use_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """main() reads Settings from the environment: point it at `settings`."""
    monkeypatch.chdir(tmp_path)  # no .env from the checkout
    for key, value in settings_env(settings).items():
        monkeypatch.setenv(key, value)


def test_db_copy_sqlite_to_postgres_copies_every_row(
    sqlite_catalogue: Settings,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_settings(sqlite_catalogue, monkeypatch, tmp_path)
    source = create_db_engine(sqlite_catalogue.database_url)
    target = create_db_engine(pg_url)
    expected = every_row(source)
    assert all(expected[name] for name in EVERY_TABLE), "a table of the source is empty"
    assert main(["db", "copy", "--to", pg_url, "-q"]) == 0
    out = capsys.readouterr().out
    total = sum(len(rows) for rows in expected.values())
    assert f"copied {total} rows" in out and "not copied" in out
    copied = every_row(target)
    assert {name: len(rows) for name, rows in copied.items()} == {
        name: len(rows) for name, rows in expected.items()
    }
    # Field by field, every row: ids, decimals, JSON, booleans, times, raw and index vectors.
    for name in EVERY_TABLE:
        assert copied[name] == expected[name], name
    products = {row["id"]: row for row in copied["products"]}
    assert any(row["price"] == Decimal("59.90") and row["removed"] for row in products.values())
    assert all(row["index_vector"] is not None for row in copied["embeddings"])

    # The sequences moved past the copied ids: new rows get fresh ones.
    with Session(target) as session, session.begin():
        entry = AuditEntry(user_id=1, action="test", outcome="ok", details={})
        search = SearchLog(user_ref="u", source="cli", model_name="m", latency_ms=1.0)
        session.add_all([entry, search])
        session.flush()
        assert entry.id == max(row["id"] for row in expected["audit_log"]) + 1
        assert search.id == max(row["id"] for row in expected["search_log"]) + 1

    # A target holding data is refused, and left as it was...
    assert main(["db", "copy", "--to", pg_url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--replace" in err[0], err
    with target.connect() as connection:
        assert (
            connection.execute(select(func.count()).select_from(AuditEntry)).scalar()
            == len(expected["audit_log"]) + 1
        )
    # ...unless --replace: then it is exactly the source again.
    assert main(["db", "copy", "--to", pg_url, "--replace", "-q"]) == 0
    assert every_row(target) == expected
    source.dispose()
    target.dispose()


def test_copied_catalogue_searches_like_the_source(
    catalog_settings: Settings,
    pg_url: str,
    extractor: Featurizer,
    catalog_photos: list[Path],
) -> None:
    source = create_db_engine(catalog_settings.database_url)
    target = create_db_engine(pg_url)
    copy_database(source, target, progress=False)
    source.dispose()
    target.dispose()
    original = open_test_engine(catalog_settings, extractor)
    copy = open_test_engine(catalog_settings.model_copy(update={"database_url": pg_url}), extractor)
    try:
        for photo in (catalog_photos[5], catalog_photos[150]):
            query = photo.read_bytes()
            expected = [item.product.sku for item in original.searcher.search_image(query).items]
            got = [item.product.sku for item in copy.searcher.search_image(query).items]
            assert got[0] == expected[0] == photo.stem
            # Float sums in another order may swap near ties at the end of the list.
            assert len(set(got) & set(expected)) >= 7, (got, expected)
    finally:
        original.close()
        copy.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "not a database URL"),
        ("nosuchdb://user@host/db", "unknown database type"),
        ("postgresql+psycopg://postgres:secret-pw@127.0.0.1:{closed}/x", "cannot connect"),
    ],
)
def test_db_copy_bad_url_is_one_line_and_exit_2(
    url: str,
    message: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine = create_db_engine(settings.database_url)
    migrate.upgrade(engine)  # a source that exists
    engine.dispose()
    use_settings(settings, monkeypatch, tmp_path)
    assert main(["db", "copy", "--to", url.format(closed=free_port())]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert "secret-pw" not in err[0] and "Traceback" not in err[0]


def test_db_copy_refuses_to_copy_onto_itself(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine = create_db_engine(settings.database_url)
    migrate.upgrade(engine)
    engine.dispose()
    use_settings(settings, monkeypatch, tmp_path)
    assert main(["db", "copy", "--to", settings.database_url]) == 2
    assert "the source database itself" in capsys.readouterr().err
