"""PostgreSQL as the second backend: the migrations on it (pgvector, the HNSW index), models and
migrations agreeing, `lookalike db postgres`, and the embedded server's own promises (`lookalike
db copy`: tests/test_postgres_copy.py). These run in every pass, SQLite's included: they use the
session's embedded server (tests/conftest.py: postgres_server) whatever the backend."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, LargeBinary, MetaData, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from db import migrate
from db.database import create_db_engine
from db.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError, free_port
from db.pg_process import read_postmaster
from db.tables import Base, Embedding, Product
from tests.conftest import REPO_ROOT, server_scratch_dir
from tests.postgres_support import EVERY_TABLE, scratch_database
from tests.test_migrations import per_model_indexes

HNSW_INDEX = "ix_embeddings_hnsw_vgg16_avgpool"


@pytest.fixture
def pg_url(postgres_server: EmbeddedPostgres) -> Iterator[str]:
    """A new, empty database on the session's server, dropped afterwards."""
    with scratch_database(postgres_server) as url:
        yield url


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A data folder for a server of the test's own (not under pytest's tmp: see
    server_scratch_dir), stopped if still running and deleted afterwards."""
    scratch = server_scratch_dir()
    try:
        yield scratch / "pg"
    finally:
        EmbeddedPostgres(scratch / "pg").stop()  # whatever a failure left running
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = create_db_engine(pg_url)
    yield engine
    engine.dispose()


# ---- migrations --------------------------------------------------------------------------------


def hnsw_definition(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'embeddings' AND indexname = :n"
            ),
            {"n": HNSW_INDEX},
        ).scalar()


def test_migrations_upgrade_downgrade_upgrade_with_pgvector(pg_engine: Engine) -> None:
    assert migrate.current_revision(pg_engine) is None
    migrate.upgrade(pg_engine)
    assert migrate.current_revision(pg_engine) == migrate.head_revision(pg_engine)
    assert set(inspect(pg_engine).get_table_names()) == EVERY_TABLE | {"alembic_version"}
    with pg_engine.connect() as connection:
        assert connection.execute(
            text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        ).scalar()
        column_type = connection.execute(
            text(
                "SELECT udt_name FROM information_schema.columns "
                "WHERE table_name = 'embeddings' AND column_name = 'index_vector'"
            )
        ).scalar()
        assert column_type == "vector"
        models = connection.execute(text("SELECT name, active FROM search_models")).all()
        assert [tuple(row) for row in models] == [("vgg16_avgpool", True)]
    definition = hnsw_definition(pg_engine) or ""
    assert "USING hnsw" in definition and "vector_cosine_ops" in definition, definition
    assert "vector(512)" in definition and "vgg16_avgpool" in definition, definition

    migrate.downgrade(pg_engine, "base")
    assert set(inspect(pg_engine).get_table_names()) == {"alembic_version"}
    assert migrate.current_revision(pg_engine) is None

    migrate.upgrade(pg_engine)
    assert set(inspect(pg_engine).get_table_names()) == EVERY_TABLE | {"alembic_version"}
    assert hnsw_definition(pg_engine) == definition


def test_migrations_work_with_a_password_that_needs_escaping(pg_url: str) -> None:
    """A URL's password is percent-encoded (p@ss%w -> p%40ss%25w), and the migrations' config
    parser would read that '%' as interpolation. (The test server trusts any password.)"""
    url = make_url(pg_url).set(password="p@ss%w").render_as_string(hide_password=False)
    assert "%40" in url
    engine = create_db_engine(url)
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision(engine)
    engine.dispose()


def test_vectors_round_trip_and_the_hnsw_index_serves_nearest_queries(pg_engine: Engine) -> None:
    migrate.upgrade(pg_engine)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(20, 512)).astype(np.float32)
    with Session(pg_engine) as session, session.begin():
        product = Product(sku="P-1", name="Probe", currency="EUR")
        session.add(product)
        session.flush()
        for i in range(len(vectors)):
            session.execute(
                text(
                    "INSERT INTO product_images (product_id, file_name, content_hash, width,"
                    " height, byte_size, created_at) VALUES (:p, :f, :h, 1, 1, 1, now())"
                ),
                {"p": product.id, "f": f"{i:02d}.jpg", "h": f"{i:064d}"},
            )
        image_ids = session.scalars(text("SELECT id FROM product_images ORDER BY id")).all()
        for image_id, vector in zip(image_ids, vectors, strict=True):
            session.add(
                Embedding(
                    image_id=image_id,
                    model_name="vgg16_avgpool",
                    dim=512,
                    vector=vector.astype("<f4").tobytes(),
                    index_vector=vector,
                )
            )
    with Session(pg_engine) as session:
        stored = session.scalars(select(Embedding).order_by(Embedding.id)).all()
        assert all(
            e.index_vector is not None and e.index_vector.tobytes() == v.tobytes()
            for e, v in zip(stored, vectors, strict=True)
        )
    # The migration's index can serve the query pgvector search makes (the planner prefers a
    # sort over 20 rows: forbid sorting, and only an ordered index scan is left).
    query = (
        "SELECT id FROM embeddings WHERE model_name = 'vgg16_avgpool' "
        "ORDER BY index_vector::vector(512) <=> CAST(:q AS vector(512)) LIMIT 3"
    )
    probe = "[" + ",".join(str(float(x)) for x in vectors[7]) + "]"
    with pg_engine.connect() as connection:
        connection.execute(text("SET enable_sort = off"))
        plan = connection.execute(text(f"EXPLAIN {query}"), {"q": probe}).scalars().all()
        scans = [line for line in plan if "Scan" in line]
        assert any(f"Index Scan using {HNSW_INDEX}" in line for line in scans), scans
        nearest = connection.execute(text(query), {"q": probe}).scalars().first()
    assert nearest == stored[7].id


def test_models_and_migrations_agree_on_postgres(pg_engine: Engine) -> None:
    """alembic compares the compiled types: VectorType (a TypeDecorator) compiles to its
    PostgreSQL implementation, pgvector's VECTOR, and the reflected column is VECTOR too
    (pgvector.sqlalchemy registers `vector` for reflection), so they agree; the per-model HNSW
    indexes are left out (per_model_indexes: not part of the metadata, on purpose)."""
    migrate.upgrade(pg_engine)
    with pg_engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": per_model_indexes}
        )
        assert compare_metadata(context, Base.metadata) == []
        # ...and the comparison does look at that column: a BLOB in the models would differ.
        drifted = MetaData(naming_convention=Base.metadata.naming_convention)
        for table in Base.metadata.sorted_tables:
            table.to_metadata(drifted)
        drifted.tables["embeddings"].c.index_vector.type = LargeBinary()
        changes = compare_metadata(context, drifted)
    assert [change[0][0] for change in changes] == ["modify_type"], changes
    assert changes[0][0][2:4] == ("embeddings", "index_vector")


# ---- the embedded server -----------------------------------------------------------------------


def test_create_and_drop_databases(postgres_server: EmbeddedPostgres) -> None:
    name = f"pg_{uuid.uuid4().hex[:12]}"
    postgres_server.create_database(name)
    engine = create_db_engine(postgres_server.url(name))
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x int)"))
        connection.execute(text("INSERT INTO t VALUES (7)"))
    engine.dispose()
    postgres_server.create_database(f"{name}_copy", template=name)
    copy = create_db_engine(postgres_server.url(f"{name}_copy"))
    connection = copy.connect()
    assert connection.execute(text("SELECT x FROM t")).scalar() == 7
    # Dropping closes the connections still open to it (what a test left open).
    postgres_server.drop_database(f"{name}_copy")
    with pytest.raises(OperationalError, match="terminating connection"):
        connection.execute(text("SELECT x FROM t"))
    connection.invalidate()
    connection.close()
    copy.dispose()
    postgres_server.drop_database(name)
    assert not postgres_server.database_exists(name)
    assert not postgres_server.database_exists(f"{name}_copy")
    with pytest.raises(EmbeddedPostgresError, match="database name"):
        postgres_server.create_database('x"; DROP DATABASE postgres; --')


def lookalike(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_db_postgres_start_and_stop_commands(server_dir: Path, tmp_path: Path) -> None:
    data_dir = server_dir
    port = free_port()
    first = lookalike(
        "db", "postgres", "start", "--dir", str(data_dir), "--port", str(port), cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    url = first.stdout.strip().splitlines()[-1].removeprefix("DATABASE_URL=")
    assert url == f"postgresql+psycopg://postgres@127.0.0.1:{port}/lookalike"
    assert "started" in first.stdout
    # The server outlived the command, serves the database it created, on 127.0.0.1 only.
    engine = create_db_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT current_database()")).scalar() == "lookalike"
        assert connection.execute(text("SHOW listen_addresses")).scalar() == "127.0.0.1"
    engine.dispose()
    again = lookalike("db", "postgres", "start", "--dir", str(data_dir), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout and again.stdout.endswith(f"{url}\n")

    stop = lookalike("db", "postgres", "stop", "--dir", str(data_dir), cwd=tmp_path)
    assert stop.returncode == 0 and "stopped" in stop.stdout, stop.stderr
    assert read_postmaster(data_dir) is None
    refused = create_db_engine(url)
    with pytest.raises(OperationalError, match=r"refused|failed"), refused.connect():
        pass
    refused.dispose()
    stop = lookalike("db", "postgres", "stop", "--dir", str(data_dir), cwd=tmp_path)
    assert stop.returncode == 0 and "no PostgreSQL server" in stop.stdout


def test_a_server_whose_owner_is_killed_stops(server_dir: Path) -> None:
    """No test server outlives its test run, even one killed with kill -9."""
    data_dir = server_dir
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from db.embedded_pg import "
            "EmbeddedPostgres; s = EmbeddedPostgres(Path(sys.argv[1]), fsync=False).start(); "
            "print(s.port, flush=True); time.sleep(300)",
            str(data_dir),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip().isdigit()
        assert read_postmaster(data_dir) is not None
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
        deadline = time.monotonic() + 20
        while read_postmaster(data_dir) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert read_postmaster(data_dir) is None, "the server outlived its owner"
    finally:
        owner.kill()
        owner.wait()
