"""PgVectorIndex (search/index/postgres.py) on 2,000 bulk-loaded vectors: PostgreSQL itself picks
the HNSW index for the cosine query, and a narrow filter still fills k thanks to the iterative scan.
On the session's embedded PostgreSQL (tests/conftest.py: postgres_server), in every pass."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bench.pg_load import copy_catalog
from db.database import create_db_engine, create_session_factory
from db.embedded_pg import EmbeddedPostgres
from db.tables import Product
from search.index import SearchFilter
from search.index.hnsw import ensure_hnsw_index, hnsw_index_name
from search.index.postgres import PgVectorIndex
from tests.pgindex_support import (
    DIM,
    HNSW_SCAN,
    MODEL,
    graph_walking_sessions,
    new_database,
    running_server,
)


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> EmbeddedPostgres:
    return running_server(request)


@dataclass
class Loaded:
    sessions: sessionmaker[Session]  # the planner's own choices
    graph_sessions: sessionmaker[Session]  # no sorting: the HNSW graph is walked
    vectors: np.ndarray  # (2000, DIM) float32, product i + 1's vector in row i


@pytest.fixture(scope="module")
def loaded(server: EmbeddedPostgres) -> Iterator[Loaded]:
    """2,000 products (one image each, 6 categories, price 10) bulk-loaded as the benchmark
    does; 40 of them (1 in 50) moved to category "rare", products 5-7 to "tiny". The HNSW
    index is built after the load (ensure_hnsw_index), then VACUUM ANALYZE."""
    name, url = new_database(server)
    engine = create_db_engine(url)
    graph_engine, graph_sessions = graph_walking_sessions(url)
    vectors = np.random.default_rng(11).random((2000, DIM), dtype=np.float32) ** 3
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP INDEX {hnsw_index_name(MODEL)}")
    raw = engine.raw_connection()
    copy_catalog(raw.driver_connection, vectors)
    raw.commit()
    raw.close()
    with engine.begin() as connection:
        connection.execute(sa.update(Product).where(Product.id % 50 == 0).values(category="rare"))
        connection.execute(
            sa.update(Product).where(Product.id.in_([5, 6, 7])).values(category="tiny")
        )
        assert ensure_hnsw_index(connection, model_name=MODEL, dim=DIM) is True
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
    yield Loaded(create_session_factory(engine), graph_sessions, vectors)
    graph_engine.dispose()
    engine.dispose()
    server.drop_database(name)


def test_plan_uses_hnsw_with_default_planner_settings(loaded: Loaded) -> None:
    """No planner settings forced: on 2,000 vectors PostgreSQL itself picks the HNSW index for
    the cosine query (with a price filter too), and the exact mode scans the table."""
    query = loaded.vectors[3] + 0.05
    check = PgVectorIndex(loaded.sessions, model_name=MODEL, dim=DIM)
    assert len(check) == check.product_count() == 2000  # the benchmark's COPY, row for row
    assert np.array_equal(check.product_vectors(4), loaded.vectors[3:4])  # bit for bit
    for ef in (40, 100):
        index = PgVectorIndex(loaded.sessions, model_name=MODEL, dim=DIM, ef_search=ef)
        assert HNSW_SCAN in index.explain(query, k=8)
        assert HNSW_SCAN in index.explain(query, k=8, query_filter=SearchFilter(max_price=50.0))
        hits = index.search(query, k=8)
        assert len(hits) == 8 and hits[0].product_id == 4  # vectors[3] is product 4's
    exact = PgVectorIndex(loaded.sessions, model_name=MODEL, dim=DIM, exact=True)
    plan = exact.explain(query, k=8)
    assert HNSW_SCAN not in plan and "Seq Scan on embeddings" in plan
    # Euclidean and inner product have no index: they scan, whatever the mode.
    assert HNSW_SCAN not in index.explain(query, k=8, metric="euclidean")


def test_narrow_filter_still_returns_k_products(loaded: Loaded) -> None:
    """A category with 1 product in 50: ef_search 40 alone finds ~1 of them among its 40
    candidates; the iterative scan goes on until k pass, without an exact fallback. A filter
    with fewer than k products returns them all (the HNSW scan runs out, the exact query
    confirms)."""
    index = PgVectorIndex(loaded.graph_sessions, model_name=MODEL, dim=DIM, ef_search=40)
    rare = np.arange(50, 2001, 50)  # (40,) product ids
    unit = loaded.vectors / np.linalg.norm(loaded.vectors, axis=1, keepdims=True)
    rng = np.random.default_rng(12)
    found = 0
    for trial in range(10):
        query = rng.random(DIM, dtype=np.float32) ** 3
        assert HNSW_SCAN in index.explain(query, k=8, query_filter=SearchFilter(category="rare"))
        hits = index.search(query, k=8, query_filter=SearchFilter(category="rare"))
        assert len(hits) == 8, trial
        assert all(h.product_id % 50 == 0 for h in hits)
        scores = unit[rare - 1] @ (query / np.linalg.norm(query))  # (40,)
        truth = set(rare[np.argsort(-scores)[:8]].tolist())
        found += len(truth & {h.product_id for h in hits})
    assert found >= 0.9 * 80  # the relaxed order is re-sorted: (nearly) the exact answer
    assert index.exact_fallbacks == 0

    # Without the iterative scan the same SQL stops short: that is what it is there for.
    with loaded.graph_sessions() as session, session.begin():
        session.execute(sa.text("SET LOCAL hnsw.ef_search = 40"))
        session.execute(sa.text("SET LOCAL hnsw.iterative_scan = off"))
        statement = index._statement(  # the very SQL `search` runs
            (query / np.linalg.norm(query)).astype(np.float32),
            float(np.linalg.norm(query)),
            limit=32,
            exact=False,
            query_filter=SearchFilter(category="rare"),
            metric="cosine",
        )
        assert len(session.execute(statement).all()) < 8

    hits = index.search(query, k=8, query_filter=SearchFilter(category="tiny"))
    assert sorted(h.product_id for h in hits) == [5, 6, 7]
    assert index.exact_fallbacks == 1
