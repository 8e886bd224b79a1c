"""Migrations: upgrade from empty, a downgrade/upgrade round trip, models and migrations agree."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from db import migrate
from db.engine import create_db_engine
from db.models import Base
from lookalike.cli import main

EXPECTED_TABLES = {
    "products",
    "product_images",
    "embeddings",
    "search_log",
    "feedback",
    "audit_log",
    "alembic_version",
}


def test_upgrade_from_empty_creates_every_table(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'new' / 'db.sqlite'}")
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision(engine)
    assert set(inspect(engine).get_table_names()) >= EXPECTED_TABLES


def test_models_and_migrations_agree(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate.upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_downgrade_upgrade_round_trip_keeps_schema(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate.upgrade(engine)
    before = {t: inspect(engine).get_columns(t) for t in inspect(engine).get_table_names()}
    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    after = {t: inspect(engine).get_columns(t) for t in inspect(engine).get_table_names()}
    assert {t: [c["name"] for c in cols] for t, cols in before.items()} == {
        t: [c["name"] for c in cols] for t, cols in after.items()
    }


def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() >= 5000


def test_cli_db_upgrade_and_current(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    assert main(["db", "current"]) == 0
    assert "base" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    engine = create_db_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    head = migrate.head_revision(engine)
    assert f"revision {head}" in capsys.readouterr().out
    assert main(["db", "downgrade", "base"]) == 0
    assert migrate.current_revision(engine) is None
