"""What tests/test_pgindex.py and tests/test_pgindex_hnsw.py share: the model under test, the
session's embedded PostgreSQL (or a skip), a fresh migrated database on it, and sessions that make
the planner walk the HNSW graph."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from db import migrate
from db.database import create_db_engine, create_session_factory
from db.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError

__all__ = ["DIM", "HNSW_SCAN", "MODEL", "graph_walking_sessions", "new_database", "running_server"]

MODEL = "vgg16_avgpool"
DIM = 512
HNSW_SCAN = "Index Scan using ix_embeddings_hnsw_vgg16_avgpool"


def running_server(request: pytest.FixtureRequest) -> EmbeddedPostgres:
    """The session's embedded PostgreSQL (tests/conftest.py: postgres_server), or a skip."""
    try:
        started: EmbeddedPostgres = request.getfixturevalue("postgres_server")
    except EmbeddedPostgresError as exc:
        pytest.skip(
            f"no PostgreSQL for the pgvector tests: the embedded server did not start: {exc}"
        )
    return started


def new_database(server: EmbeddedPostgres) -> tuple[str, str]:
    """A fresh database on `server`, migrated to the head: (its name, its URL)."""
    name = f"pgindex_{uuid.uuid4().hex[:10]}"
    server.create_database(name)
    url = server.url(name)
    engine = create_db_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return name, url


def graph_walking_sessions(url: str) -> tuple[sa.Engine, sessionmaker[Session]]:
    """Sessions whose planner may not sort: an ORDER BY distance can then only come from the
    HNSW index, so the non-exact index walks the graph even on a table this small (where
    PostgreSQL rightly prefers to scan and sort). Exact mode (index scans off) still sorts."""
    engine = sa.create_engine(url, connect_args={"options": "-c enable_sort=off"})
    return engine, create_session_factory(engine)
