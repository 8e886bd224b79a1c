"""Migrations: upgrade from empty, a downgrade/upgrade round trip, models and migrations agree,
on the run's backend (SQLite, or PostgreSQL with --backend=postgres; tests/test_postgres.py
checks PostgreSQL in every run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from cli.main import main
from db import migrate
from db.database import create_db_engine
from db.tables import Base
from tests.conftest import current_backend, database_url_for

EXPECTED_TABLES = {
    "products",
    "product_images",
    "embeddings",
    "search_log",
    "feedback",
    "audit_log",
    "search_daily",
    "alembic_version",
}


@pytest.fixture
def empty_url(tmp_path: Path) -> str:
    """A database nobody has touched: a SQLite file (in a folder that does not exist yet), or
    a new, empty PostgreSQL database."""
    if current_backend() == "postgres":
        return database_url_for(tmp_path)
    return f"sqlite:///{tmp_path / 'new' / 'db.sqlite'}"


def per_model_indexes(
    obj: object, name: str | None, type_: str, reflected: bool, _: object
) -> bool:
    """Leave out the HNSW index of each model's vectors: migrations (and reindexing) create one
    per model, as SQL of their own, so it is not part of the models' metadata."""
    return not (type_ == "index" and reflected and (name or "").startswith("ix_embeddings_hnsw_"))


def test_upgrade_from_empty_creates_every_table(empty_url: str) -> None:
    engine = create_db_engine(empty_url)
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision(engine)
    assert set(inspect(engine).get_table_names()) >= EXPECTED_TABLES


def test_models_and_migrations_agree(empty_url: str) -> None:
    engine = create_db_engine(empty_url)
    migrate.upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": per_model_indexes}
        )
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_downgrade_upgrade_round_trip_keeps_schema(empty_url: str) -> None:
    engine = create_db_engine(empty_url)
    migrate.upgrade(engine)
    before = {t: inspect(engine).get_columns(t) for t in inspect(engine).get_table_names()}
    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    after = {t: inspect(engine).get_columns(t) for t in inspect(engine).get_table_names()}
    assert {t: [c["name"] for c in cols] for t, cols in before.items()} == {
        t: [c["name"] for c in cols] for t, cols in after.items()
    }
    engine.dispose()


@pytest.mark.sqlite_only(reason="SQLite's own connection pragmas")
def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() >= 5000


def test_cli_db_upgrade_and_current(
    tmp_path: Path,
    empty_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout
    monkeypatch.setenv("DATABASE_URL", empty_url)
    assert main(["db", "current"]) == 0
    assert "base" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    engine = create_db_engine(empty_url)
    head = migrate.head_revision(engine)
    assert f"revision {head}" in capsys.readouterr().out
    assert main(["db", "downgrade", "base"]) == 0
    assert migrate.current_revision(engine) is None
    engine.dispose()


def _rows(engine: Engine, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql))]


def test_0012_keeps_every_image_vector_and_lets_two_products_share_a_photo(
    empty_url: str,
) -> None:
    """The constraint change copies product_images on SQLite: the vectors that reference it
    (ON DELETE CASCADE) must survive on both backends, and downgrading keeps one row per photo."""
    engine = create_db_engine(empty_url)
    migrate.upgrade(engine, "0011")
    now = "2026-12-03 04:00:00"
    with engine.begin() as connection:
        for product_id, sku in ((1, "BASE"), (2, "SET")):
            connection.execute(
                text(
                    "INSERT INTO products (id, sku, name, currency, in_stock, removed,"
                    " created_at, updated_at) VALUES (:id, :sku, :sku, 'EUR', true, false,"
                    " :now, :now)"
                ),
                {"id": product_id, "sku": sku, "now": now},
            )
        for image_id, digest in ((10, "a" * 64), (11, "b" * 64)):
            connection.execute(
                text(
                    "INSERT INTO product_images (id, product_id, file_name, content_hash,"
                    " width, height, byte_size, created_at)"
                    " VALUES (:id, 1, :file, :digest, 4, 4, 9, :now)"
                ),
                {
                    "id": image_id,
                    "file": f"{digest[:2]}/{digest}.jpg",
                    "digest": digest,
                    "now": now,
                },
            )
            connection.execute(
                text(
                    "INSERT INTO embeddings (image_id, model_name, dim, vector, created_at)"
                    " VALUES (:id, 'm', 2, :vector, :now)"
                ),
                {"id": image_id, "vector": b"\0" * 8, "now": now},
            )
    migrate.upgrade(engine)
    assert _rows(engine, "SELECT image_id FROM embeddings ORDER BY image_id") == [(10,), (11,)]
    with engine.begin() as connection:  # the base product's photo in the set too
        connection.execute(
            text(
                "INSERT INTO product_images (id, product_id, file_name, content_hash, width,"
                " height, byte_size, created_at, variant_price, variant_currency)"
                " SELECT 12, 2, file_name, content_hash, width, height, byte_size, created_at,"
                " 49.90, 'EUR' FROM product_images WHERE id = 10"
            )
        )
        connection.execute(
            text(
                "INSERT INTO embeddings (image_id, model_name, dim, vector, created_at)"
                " SELECT 12, model_name, dim, vector, created_at FROM embeddings"
                " WHERE image_id = 10"
            )
        )
    with pytest.raises(IntegrityError), engine.begin() as connection:  # twice in one product
        connection.execute(
            text(
                "INSERT INTO product_images (product_id, file_name, content_hash, width,"
                " height, byte_size, created_at)"
                " SELECT 2, file_name, content_hash, 4, 4, 9, created_at FROM product_images"
                " WHERE id = 10"
            )
        )
    migrate.downgrade(engine, "0011")
    assert _rows(engine, "SELECT id FROM product_images ORDER BY id") == [(10,), (11,)]
    assert _rows(engine, "SELECT image_id FROM embeddings ORDER BY image_id") == [(10,), (11,)]
    migrate.upgrade(engine)
    assert _rows(engine, "SELECT image_id FROM embeddings ORDER BY image_id") == [(10,), (11,)]
    engine.dispose()
