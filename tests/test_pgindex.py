"""PgVectorIndex (search/index/postgres.py): the k-nearest query inside PostgreSQL gives what the
in-memory VectorIndex gives over the same rows, exactly (sequential scan) and through the HNSW
graph; bad input refused; live reads; per-model HNSW indexes. (The planner's own choice of the
HNSW index and narrow filters: tests/test_pgindex_hnsw.py.) On the session's embedded
PostgreSQL (tests/conftest.py: postgres_server), in every pass, SQLite's included."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from db.database import create_db_engine, create_session_factory
from db.embedded_pg import EmbeddedPostgres
from db.tables import Embedding, Product, ProductImage
from search.index import METRICS, SearchFilter
from search.index.hnsw import ensure_hnsw_index, hnsw_index_name, index_info
from search.index.memory import VectorIndex
from search.index.postgres import PgVectorIndex
from search.index.protocol import Hit, ProductFacts
from tests.pgindex_support import (
    DIM,
    HNSW_SCAN,
    MODEL,
    graph_walking_sessions,
    new_database,
    running_server,
)

CATEGORIES = ("boots", "sandals", "sneakers", "heels", None)
PRICES = (Decimal("9.99"), Decimal("19.99"), Decimal("20.00"), Decimal("49.50"), None)


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> EmbeddedPostgres:
    return running_server(request)


@dataclass
class Catalogue:
    url: str
    sessions: sessionmaker[Session]
    graph_sessions: sessionmaker[Session]
    reference: VectorIndex
    product_ids: list[int]
    prices: dict[int, float]
    vectors: dict[int, np.ndarray]  # image id -> (DIM,) float32 index vector


@pytest.fixture(scope="module")
def catalogue(server: EmbeddedPostgres) -> Iterator[Catalogue]:
    """~260 products, 1-3 images each (~520 vectors), categories, prices (NULL included),
    out-of-stock and removed products, a product without images, one whose vector is not
    computed yet, vectors of another model; two products sharing a vector (a tie across
    products) and a product whose two images share one (a tie inside a product). The same
    rows go into a VectorIndex: the reference answer."""
    name, url = new_database(server)
    engine = create_db_engine(url)
    sessions = create_session_factory(engine)
    rng = np.random.default_rng(20261124)
    facts: list[ProductFacts] = []
    image_ids: list[int] = []
    owners: list[int] = []
    vectors: dict[int, np.ndarray] = {}
    prices: dict[int, float] = {}
    image = 0
    with sessions() as session, session.begin():
        for pid in range(1, 261):
            price = PRICES[int(rng.integers(len(PRICES)))]
            category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
            in_stock, removed = bool(rng.random() > 0.1), bool(rng.random() < 0.05)
            session.add(
                Product(
                    id=pid,
                    sku=f"sku-{pid}",
                    name=f"product {pid}",
                    price=price,
                    currency="EUR",
                    category=category,
                    in_stock=in_stock,
                    removed=removed,
                )
            )
            prices[pid] = float(price) if price is not None else float("nan")
            facts.append(ProductFacts(pid, category, prices[pid], in_stock and not removed))
            count = {7: 0, 11: 2, 12: 2, 15: 2}.get(pid, int(rng.integers(1, 4)))
            for j in range(count):
                image += 1
                # Post-processed vectors are centred: negative values, cosines below 0 too.
                vector = rng.standard_normal(DIM).astype(np.float32) * rng.uniform(0.5, 3.0)
                if pid == 12:
                    vector = vectors[image_ids[owners.index(11)]]  # tie with product 11
                if pid == 15 and j == 1:
                    vector = vectors[image - 1]  # tie between its own two images
                session.add(
                    ProductImage(
                        id=image,
                        product_id=pid,
                        file_name=f"{image}.jpg",
                        content_hash=f"{image:064x}",
                        width=224,
                        height=224,
                        byte_size=1000,
                    )
                )
                pending = pid == 9 and j == 0  # stored raw, index vector not computed yet
                session.add(
                    Embedding(
                        image_id=image,
                        model_name=MODEL,
                        dim=DIM,
                        vector=vector.tobytes(),
                        index_vector=None if pending else vector,
                    )
                )
                # Another backbone's vector of the same image: never part of these searches.
                other = rng.standard_normal(256).astype(np.float32)
                session.add(
                    Embedding(
                        image_id=image,
                        model_name="other_model",
                        dim=256,
                        vector=other.tobytes(),
                        index_vector=other,
                    )
                )
                if not pending:
                    image_ids.append(image)
                    owners.append(pid)
                    vectors[image] = vector
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("ANALYZE")
    reference = VectorIndex.build(
        facts=facts,
        image_ids=np.array(image_ids),
        product_ids=np.array(owners),
        vectors=np.stack([vectors[i] for i in image_ids]),
        ann_min_rows=None,
    )
    graph_engine, graph_sessions = graph_walking_sessions(url)
    yield Catalogue(
        url=url,
        sessions=sessions,
        graph_sessions=graph_sessions,
        reference=reference,
        product_ids=[f.product_id for f in facts],
        prices=prices,
        vectors=vectors,
    )
    graph_engine.dispose()
    engine.dispose()
    server.drop_database(name)


def _assert_same(got: list[Hit], want: list[Hit], context: Any) -> None:
    assert [(h.product_id, h.image_id) for h in got] == [
        (h.product_id, h.image_id) for h in want
    ], context
    np.testing.assert_allclose(
        [h.distance for h in got],
        [h.distance for h in want],
        rtol=1e-6,  # inner products reach |x| ~ 500: 1e-5 is below a float32 step there
        atol=1e-5,
        err_msg=str(context),
    )
    np.testing.assert_allclose(
        [h.similarity for h in got], [h.similarity for h in want], rtol=0, atol=1e-3
    )


def _random_filters(rng: np.random.Generator, cat: Catalogue) -> dict[str, Any]:
    """A random combination of every filter, from none to all at once."""
    filters: dict[str, Any] = {}
    if rng.random() < 0.5:
        filters["category"] = ["boots", "sandals", "sneakers", "heels", "no-such"][
            int(rng.integers(5))
        ]
    if rng.random() < 0.4:
        # Exactly a product's price (<= must include it), or between prices.
        filters["max_price"] = [9.99, 19.99, 20.0, 35.0, 100.0][int(rng.integers(5))]
    if rng.random() < 0.3:
        filters["include_inactive"] = True
    if rng.random() < 0.4:
        chosen = rng.choice(cat.product_ids, size=int(rng.integers(1, 40)), replace=False)
        filters["exclude_product_ids"] = {int(p) for p in chosen} | {99_999}  # and an unknown
    return filters


@pytest.mark.parametrize("metric", METRICS)
def test_exact_and_hnsw_give_what_vector_index_gives(catalogue: Catalogue, metric: str) -> None:
    """Many random queries and filter combinations, k from 1 to more than there are
    products: the same products, images (best image per product), order, distances."""
    exact = PgVectorIndex(catalogue.sessions, model_name=MODEL, dim=DIM, exact=True)
    # ef_search above the row count: the graph walk visits every reachable vector, so the
    # HNSW path is exact too (the plan check below proves the graph is walked).
    hnsw = PgVectorIndex(catalogue.graph_sessions, model_name=MODEL, dim=DIM, ef_search=1000)
    rng = np.random.default_rng(METRICS.index(metric))
    stored = list(catalogue.vectors.values())
    checked = 0
    for trial in range(70):
        if trial % 5 == 0:  # a stored vector, slightly moved: close neighbours, near-ties
            query = stored[int(rng.integers(len(stored)))] + 0.01 * rng.standard_normal(DIM)
        else:
            query = rng.standard_normal(DIM) * rng.uniform(0.1, 5.0)
        k = [1, 3, 8, 8, 12, 300][int(rng.integers(6))]
        filters = _random_filters(rng, catalogue)
        want = catalogue.reference.search(
            query, k=k, metric=metric, query_filter=SearchFilter(**filters)
        )  # type: ignore[arg-type]
        for index in (exact, hnsw):
            got = index.search(query, k=k, metric=metric, query_filter=SearchFilter(**filters))  # type: ignore[arg-type]
            _assert_same(got, want, (trial, k, filters, index is hnsw))
        checked += len(want)
    assert checked > 1000  # the filters did not leave the comparisons empty
    if metric == "cosine":
        assert HNSW_SCAN in hnsw.explain(
            query, k=8, query_filter=SearchFilter(category="boots", max_price=20.0)
        )
        assert HNSW_SCAN not in exact.explain(query, k=8)


def test_ties_are_broken_by_product_then_image(catalogue: Catalogue) -> None:
    """Products 11 and 12 share a vector: same distance, 11 first; product 15's two images
    share one: the lower image id represents it."""
    index = PgVectorIndex(catalogue.graph_sessions, model_name=MODEL, dim=DIM, ef_search=1000)
    exact = PgVectorIndex(catalogue.sessions, model_name=MODEL, dim=DIM, exact=True)
    shared = catalogue.vectors[catalogue.reference.image_ids_of(11)[0]]
    for pg in (index, exact):
        hits = pg.search(shared, k=2, query_filter=SearchFilter(include_inactive=True))
        assert [h.product_id for h in hits] == [11, 12]
        assert hits[0].distance == hits[1].distance == pytest.approx(0.0, abs=1e-6)
    first, second = catalogue.reference.image_ids_of(15)
    assert np.array_equal(catalogue.vectors[first], catalogue.vectors[second])
    assert (
        catalogue.reference.search(
            catalogue.vectors[second], k=1, query_filter=SearchFilter(include_inactive=True)
        )[0].image_id
        == first
    )
    for pg in (index, exact):
        hit = pg.search(
            catalogue.vectors[second], k=1, query_filter=SearchFilter(include_inactive=True)
        )[0]
        assert (hit.product_id, hit.image_id) == (15, first)


def test_zero_query_ranks_by_ids_like_vector_index(catalogue: Catalogue) -> None:
    """A zero query has no direction (pgvector's cosine would be NaN): every product is at
    distance 1.0 (cosine) or 0 (inner product), ties by id, as in VectorIndex."""
    zero = np.zeros(DIM)
    for index in (
        PgVectorIndex(catalogue.sessions, model_name=MODEL, dim=DIM, exact=True),
        PgVectorIndex(catalogue.graph_sessions, model_name=MODEL, dim=DIM),
    ):
        for metric in METRICS:
            for filters in ({}, {"category": "heels"}):
                want = catalogue.reference.search(
                    zero, k=10, metric=metric, query_filter=SearchFilter(**filters)
                )
                got = index.search(zero, k=10, metric=metric, query_filter=SearchFilter(**filters))
                _assert_same(got, want, (metric, filters))
        assert index.exact_fallbacks == 0  # ordered by ids, no graph involved
    assert catalogue.reference.search(zero, k=1)[0].distance == 1.0


@pytest.mark.parametrize(
    ("query", "kwargs"),
    [
        (np.zeros(DIM - 1), {}),
        (np.zeros((2, DIM)), {}),
        (np.zeros((DIM, 1)), {}),
        (np.full(DIM, np.nan), {}),
        (np.concatenate([np.ones(DIM - 1), [np.inf]]), {}),
        (np.array(["a"] * DIM), {}),
        (np.ones(DIM), {"k": -1}),
        (np.ones(DIM), {"max_price": float("nan")}),
        (np.ones(DIM), {"metric": "manhattan"}),
    ],
)
def test_bad_queries_raise_value_error(
    catalogue: Catalogue, query: np.ndarray, kwargs: dict[str, Any]
) -> None:
    index = PgVectorIndex(catalogue.sessions, model_name=MODEL, dim=DIM)
    filter_fields = {key: kwargs.pop(key) for key in list(kwargs) if key == "max_price"}
    with pytest.raises(ValueError):
        index.search(query, query_filter=SearchFilter(**filter_fields), **kwargs)
    with pytest.raises(ValueError):  # the same refusal as the in-memory index
        catalogue.reference.search(query, query_filter=SearchFilter(**filter_fields), **kwargs)


def test_bad_construction_raises() -> None:
    sessions: sessionmaker[Session] = sessionmaker()
    for kwargs in ({"dim": 0}, {"ef_search": 0}, {"ef_search": 1001}, {"model_name": "a'b"}):
        with pytest.raises(ValueError):
            PgVectorIndex(sessions, **{"model_name": MODEL, "dim": DIM, **kwargs})


def test_counts_and_product_vectors(catalogue: Catalogue) -> None:
    index = PgVectorIndex(catalogue.sessions, model_name=MODEL, dim=DIM)
    ref = catalogue.reference
    assert index.dim == DIM
    assert len(index) == len(ref) == len(catalogue.vectors)
    assert index.product_count() == ref.product_count()
    assert index.product_count(active_only=False) == ref.product_count(active_only=False)
    assert index.product_count() < index.product_count(active_only=False)
    for pid in (1, 9, 15, 42, 260):
        got = index.product_vectors(pid)
        assert got.dtype == np.float32 and got.shape[1] == DIM
        np.testing.assert_allclose(got, ref.product_vectors(pid), rtol=1e-6, atol=1e-6)
        assert index.image_ids_of(pid) == ref.image_ids_of(pid)
        stored = np.stack([catalogue.vectors[i] for i in index.image_ids_of(pid)])
        assert np.array_equal(got, stored)  # exactly the stored float32, by image id
    assert index.product_vectors(7).shape == (0, DIM)  # a product without images
    assert index.image_ids_of(7) == []
    ids = [1, 7, 9, 15, 42, 260, 99_999]  # the category step reads these (99_999: no product)
    assert index.categories_of(ids) == ref.categories_of(ids)
    assert 99_999 not in index.categories_of(ids) and len(index.categories_of(ids)) == 6
    with pytest.raises(KeyError):
        index.product_vectors(99_999)


def test_reads_the_database_live_and_writes_are_no_ops(catalogue: Catalogue) -> None:
    """The database is the truth: a row committed by anyone is found at once, a product taken
    out of stock disappears at once, and the write methods change nothing."""
    index = PgVectorIndex(catalogue.sessions, model_name=MODEL, dim=DIM)
    query = np.random.default_rng(3).standard_normal(DIM)
    before = index.search(query, k=5)
    index.upsert_product(ProductFacts(before[0].product_id, None, 1.0, active=False))
    index.set_active(before[0].product_id, False)
    index.remove_image(before[0].image_id)
    index.add_vectors(product_id=1, image_ids=[10_000], vectors=np.ones((1, DIM)))
    assert index.search(query, k=5) == before
    vector = (2 * query).astype(np.float32)
    try:
        with catalogue.sessions() as session, session.begin():
            session.add(
                Product(id=500, sku="new", name="new", price=Decimal("1.00"), currency="EUR")
            )
            session.add(
                ProductImage(
                    id=5000,
                    product_id=500,
                    file_name="n.jpg",
                    content_hash="n" * 64,
                    width=1,
                    height=1,
                    byte_size=1,
                )
            )
            session.add(
                Embedding(
                    image_id=5000,
                    model_name=MODEL,
                    dim=DIM,
                    vector=vector.tobytes(),
                    index_vector=vector,
                )
            )
        hit = index.search(query, k=1)[0]
        assert (hit.product_id, hit.image_id) == (500, 5000)
        assert hit.distance == pytest.approx(0.0, abs=1e-6)
        assert hit.similarity == pytest.approx(100.0)
        with catalogue.sessions() as session, session.begin():
            session.execute(sa.update(Product).where(Product.id == 500).values(in_stock=False))
        assert index.search(query, k=1)[0].product_id != 500
        assert (
            index.search(query, k=1, query_filter=SearchFilter(include_inactive=True))[0].product_id
            == 500
        )
        _assert_same(
            index.search(
                query,
                k=3,
                query_filter=SearchFilter(include_inactive=True, exclude_product_ids=[500]),
            ),
            catalogue.reference.search(
                query, k=3, query_filter=SearchFilter(include_inactive=True)
            ),
            "excluded",
        )
    finally:
        with catalogue.sessions() as session, session.begin():
            session.execute(sa.delete(Product).where(Product.id == 500))  # cascades
    assert index.search(query, k=5) == before


def test_ensure_hnsw_index_for_another_model(catalogue: Catalogue) -> None:
    """A backbone activated later gets the same kind of partial index, once; its queries then
    walk it. Too many dimensions for pgvector's HNSW: no index, a warning, exact scans."""
    engine = sa.create_engine(catalogue.url)
    try:
        with engine.begin() as connection:
            info = index_info(connection, model_name="other_model")
            assert info["present"] is False and info["rows"] == len(catalogue.vectors) + 1
            assert ensure_hnsw_index(connection, model_name="other_model", dim=256) is True
            assert ensure_hnsw_index(connection, model_name="other_model", dim=256) is False
            info = index_info(connection, model_name="other_model")
            assert info["present"] and info["valid"] and info["bytes"] > 0
            assert info["index"] == "ix_embeddings_hnsw_other_model"
            assert ensure_hnsw_index(connection, model_name="huge_model", dim=4096) is False
            assert index_info(connection, model_name="huge_model")["present"] is False
            assert index_info(connection, model_name=MODEL)["present"] is True
        index = PgVectorIndex(catalogue.graph_sessions, model_name="other_model", dim=256)
        plan = index.explain(np.ones(256), k=8)
        assert "Index Scan using ix_embeddings_hnsw_other_model" in plan
        assert len(index.search(np.ones(256), k=8)) == 8
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP INDEX IF EXISTS ix_embeddings_hnsw_other_model")
        engine.dispose()
    with pytest.raises(ValueError):
        hnsw_index_name("x; DROP TABLE products")
    long_a, long_b = "m" * 60 + "_a", "m" * 60 + "_b"
    assert hnsw_index_name(long_a) != hnsw_index_name(long_b)
    assert max(len(hnsw_index_name(long_a)), len(hnsw_index_name(long_b))) <= 63
