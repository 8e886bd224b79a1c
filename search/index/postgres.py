"""The k-nearest query inside PostgreSQL with pgvector: `PgVectorIndex`, a `SearchIndex`.

Each model has a partial HNSW index over its vectors (`search.index.hnsw`: the index's DDL, the
settings a search walks it with, EXPLAIN). A search is one SQL statement: embeddings ->
product_images -> products, every filter in the WHERE clause, ordered by the metric's operator on
`index_vector::vector(dim)` (cosine `<=>`, euclidean `<->`, inner product `<#>`, which is already
-(q . x)), LIMIT n. The expression and the model name (a literal, not a parameter: the planner must
prove the partial index's predicate) are exactly those of the index, so the cosine query can walk
the HNSW graph; the other metrics have no index and scan. Whether it does is the planner's choice,
from the table's statistics: on a small table (below ~1,000 vectors) or with a very selective filter
(a category of a few dozen products) it reads the few rows and sorts them, which is both exact and
cheaper; from a few thousand vectors on it walks the graph (tests/test_pgindex.py,
docs/benchmarks.md). hnsw.iterative_scan = relaxed_order lets a narrow filter still fill the LIMIT,
at the price of rows in nearly, not strictly, ascending order: they are re-sorted here; `exact=True`
scans sequentially (ties ordered by ids as well).

A product with several images would take several of the n rows, so n starts at 4k; the rows
are deduplicated to one hit per product (its best image) in Python, and the query is repeated
with a larger n only when fewer than k products came back and the query returned all n rows.
When the HNSW scan gives up early (fewer than n rows, fewer than k products: a filter so narrow
that hnsw.max_scan_tuples rows hold fewer than k of its products), the exact query answers, as
`VectorIndex` falls back from its ANN to the exact scan.

Each fetched row carries its vector (2 KB at 512 dimensions), and distances and similarities are
recomputed from it with the very functions `VectorIndex` uses (`search.index.distance.distances`,
`top_k_products`), so hits, distances (float32) and tie-breaking are those of the in-memory
index; PostgreSQL only chooses the candidate rows. One difference remains: a vector of length 0
has no direction; pgvector gives it a NaN cosine distance (ranked last) and the HNSW index
leaves it out, while `VectorIndex` puts it at distance 1.0. Post-processed image vectors are
never zero.

The database is the truth: the write methods are no-ops (every search reads the committed
rows), and nothing is loaded at start.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from pgvector.sqlalchemy import VECTOR
from sqlalchemy.orm import Session, sessionmaker

from db.tables import Embedding, Product, ProductImage
from search.index.colour_memo import ColourMemo
from search.index.distance import (
    CANDIDATE_FACTOR,
    distances,
    normalised_query,
    normalised_with_norms,
    top_k_products,
)
from search.index.hnsw import check_model_name, configure_search, explain_plan
from search.index.protocol import NO_FILTER, FloatRows, Hit, Metric, ProductFacts, SearchFilter

__all__ = ["PgVectorIndex"]

log = logging.getLogger(__name__)

_GROWTH = 4  # the LIMIT grows this much per repeat (each repeat walks the graph again)
_OPERATORS: dict[Metric, str] = {"cosine": "<=>", "euclidean": "<->", "inner_product": "<#>"}


def _from_vector_send(data: bytes, dim: int) -> FloatRows:
    """pgvector's binary form (uint16 dim, uint16 unused, dim big-endian float32) -> (dim,)
    float32; ValueError if the stored vector has another dimension than the model's."""
    stored = int.from_bytes(data[:2], "big")
    if stored != dim or len(data) != 4 + 4 * dim:
        raise ValueError(f"stored vector has {stored} values, expected {dim}")
    out: FloatRows = np.frombuffer(data, dtype=">f4", offset=4).astype(np.float32)
    return out


class PgVectorIndex:
    """`SearchIndex` over the database: every search is a pgvector k-nearest SQL query.

    `session_factory` must be bound to PostgreSQL with the vector extension (migration 0003).
    `ef_search`: hnsw.ef_search for the graph walk (pgvector's default is 40; 100 trades a
    little speed for recall). `exact`: no index, an exact sequential scan (for tests and for
    measuring recall).
    """

    reads_database = True
    # It lives in the database: a search reads its candidates' colours there.
    colour_memo: ColourMemo | None = None

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        model_name: str,
        dim: int,
        ef_search: int = 100,
        exact: bool = False,
    ) -> None:
        check_model_name(model_name)
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if not 1 <= ef_search <= 1000:  # pgvector's bounds for hnsw.ef_search
            raise ValueError(f"ef_search must be in [1, 1000], got {ef_search}")
        self._sessions = session_factory
        self._model_name = model_name
        self._dim = dim
        self._ef_search = ef_search
        self._exact = exact
        # How often a narrow filter made the HNSW scan stop short and the exact query answer.
        self.exact_fallbacks = 0
        # The indexed expression, exactly as in the index definition: index_vector::vector(dim)
        self._vector = sa.cast(Embedding.index_vector, VECTOR(dim))
        # The model as a literal in the SQL text, not a parameter: the planner must see that
        # model_name = '<model>' implies the partial index's WHERE, also in a generic plan.
        self._model_filter = Embedding.model_name == sa.literal(model_name, literal_execute=True)
        # The vectors come back in pgvector's binary form (vector_send: uint16 dim, uint16
        # unused, dim big-endian float32), not as text: parsing 32 x 512 decimal numbers in
        # Python would cost more than the whole query.
        self._vector_bytes = sa.func.vector_send(Embedding.index_vector, type_=sa.LargeBinary)

    # ------------------------------------------------------------------ reading

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model_name(self) -> str:
        return self._model_name

    def __len__(self) -> int:
        """Image vectors of the model in the database (inactive products' included)."""
        with self._sessions() as session:
            count = session.execute(
                sa.select(sa.func.count())
                .select_from(Embedding)
                .where(self._model_filter, Embedding.index_vector.is_not(None))
            ).scalar_one()
        return int(count)

    def product_count(self, *, active_only: bool = True) -> int:
        """Products with at least one image vector of the model (only active ones by default)."""
        query = (
            sa.select(sa.func.count(sa.distinct(ProductImage.product_id)))
            .select_from(Embedding)
            .join(ProductImage, ProductImage.id == Embedding.image_id)
            .where(self._model_filter, Embedding.index_vector.is_not(None))
        )
        if active_only:
            query = query.join(Product, Product.id == ProductImage.product_id).where(
                Product.in_stock.is_(True), Product.removed.is_(False)
            )
        with self._sessions() as session:
            return int(session.execute(query).scalar_one())

    def categories_of(self, product_ids: Iterable[int]) -> dict[int, str | None]:
        ids = list(product_ids)
        if not ids:
            return {}
        with self._sessions() as session:
            rows = session.execute(
                sa.select(Product.id, Product.category).where(Product.id.in_(ids))
            ).all()
        return {int(product_id): category for product_id, category in rows}

    def image_ids_of(self, product_id: int) -> list[int]:
        """The image ids of a product that have a vector of the model (empty if none or
        unknown), ascending."""
        with self._sessions() as session:
            ids = session.execute(
                sa.select(ProductImage.id)
                .join(Embedding, Embedding.image_id == ProductImage.id)
                .where(
                    ProductImage.product_id == product_id,
                    self._model_filter,
                    Embedding.index_vector.is_not(None),
                )
                .order_by(ProductImage.id)
            ).scalars()
            return [int(image_id) for image_id in ids]

    def product_vectors(self, product_id: int) -> FloatRows:
        """(m, dim) float32 index vectors of a product's images, by image id, as stored.

        m is 0 for a known product without vectors; an unknown product raises KeyError.
        """
        with self._sessions() as session:
            if session.get(Product, product_id) is None:
                raise KeyError(f"unknown product {product_id}")
            rows = session.execute(
                sa.select(Embedding.index_vector)
                .join(ProductImage, ProductImage.id == Embedding.image_id)
                .where(
                    ProductImage.product_id == product_id,
                    self._model_filter,
                    Embedding.index_vector.is_not(None),
                )
                .order_by(ProductImage.id)
            ).all()
        out = np.zeros((len(rows), self._dim), dtype=np.float32)  # (m, dim)
        for i, (vector,) in enumerate(rows):
            out[i] = vector
        return out

    def search(
        self,
        query: npt.ArrayLike,
        *,
        k: int = 8,
        query_filter: SearchFilter = NO_FILTER,
        metric: Metric = "cosine",
    ) -> list[Hit]:
        """The k products closest to `query` ((dim,) floats), one hit each (its best image);
        the same answer as `VectorIndex.search` (up to the HNSW's approximation unless
        `exact`): ascending distance in `metric`, ties by product id then image id, fewer
        than k hits when fewer products pass the filters."""
        q_sql, q_unit, q_norm = self._check_query(query, k, metric)
        if k == 0:
            return []
        exact = self._exact
        n = CANDIDATE_FACTOR * k
        with self._sessions() as session, session.begin():
            self._configure(session, exact=exact)
            while True:
                statement = self._statement(
                    q_sql,
                    q_norm,
                    limit=n,
                    exact=exact,
                    query_filter=query_filter,
                    metric=metric,
                )
                rows = session.execute(statement).all()
                hits = self._rank(rows, q_unit, q_norm, k, metric)
                if len(hits) >= k:
                    return hits
                if len(rows) == n:  # there may be more rows: ask for more
                    n *= _GROWTH
                    continue
                if exact or metric != "cosine" or q_norm == 0.0:  # no index: every row seen
                    return hits
                # The HNSW scan stopped before n rows (hnsw.max_scan_tuples): only an exact
                # scan can tell whether k products pass the filters.
                self.exact_fallbacks += 1
                log.debug("narrow filter: HNSW gave %d rows, scanning exactly", len(rows))
                exact = True
                n = CANDIDATE_FACTOR * k
                self._configure(session, exact=True)

    def explain(
        self,
        query: npt.ArrayLike,
        *,
        k: int = 8,
        query_filter: SearchFilter = NO_FILTER,
        metric: Metric = "cosine",
        analyze: bool = False,
    ) -> str:
        """PostgreSQL's plan for the first query `search` would run (EXPLAIN [ANALYZE]), the
        query vector shortened to '[...]': for checking that the HNSW index is used."""
        q_sql, _, q_norm = self._check_query(query, k, metric)
        statement = self._statement(
            q_sql,
            q_norm,
            limit=CANDIDATE_FACTOR * max(k, 1),
            exact=self._exact,
            query_filter=query_filter,
            metric=metric,
        )
        with self._sessions() as session, session.begin():
            self._configure(session, exact=self._exact)
            return explain_plan(session.connection(), statement, analyze=analyze)

    # ------------------------------------------------------------------ the query

    def _check_query(
        self, query: npt.ArrayLike, k: int, metric: Metric
    ) -> tuple[FloatRows, FloatRows, float]:
        """(what the SQL compares, the unit query, its length); (dim,) float32 each.
        ValueError like `VectorIndex.search`.

        Cosine and inner-product order do not depend on the query's length, so the SQL gets
        the unit query (no float32 overflow whatever the scale); euclidean needs it as given.
        """
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if metric not in _OPERATORS:
            raise ValueError(f"unknown metric {metric!r}")
        q = np.asarray(query)
        if q.ndim != 1 or q.shape[0] != self._dim:
            raise ValueError(f"query: expected shape ({self._dim},), got {q.shape}")
        q_unit, q_norm = normalised_query(q, self._dim)
        q_sql = q.astype(np.float32) if metric == "euclidean" else q_unit
        return q_sql, q_unit, q_norm

    def _configure(self, session: Session, *, exact: bool) -> None:
        """The transaction's search settings (`search.index.hnsw.configure_search`)."""
        configure_search(session, exact=exact, ef_search=self._ef_search)

    def _statement(
        self,
        q: FloatRows,
        q_norm: float,
        *,
        limit: int,
        exact: bool,
        query_filter: SearchFilter,
        metric: Metric,
    ) -> sa.Select[int, int, bytes]:
        """SELECT product id, image id, index vector ... ORDER BY distance LIMIT `limit`."""
        statement = (
            sa.select(ProductImage.product_id, ProductImage.id, self._vector_bytes)
            .select_from(Embedding)
            .join(ProductImage, ProductImage.id == Embedding.image_id)
            .join(Product, Product.id == ProductImage.product_id)
            .where(self._model_filter, Embedding.index_vector.is_not(None))
        )
        category, max_price = query_filter.category, query_filter.max_price
        if not query_filter.include_inactive:
            statement = statement.where(Product.in_stock.is_(True), Product.removed.is_(False))
        if category is not None:
            statement = statement.where(Product.category == category)
        if max_price is not None:
            # numeric <= the shortest decimal of the float: the same answer as VectorIndex's
            # float(price) <= max_price for 2-decimal prices, and the planner can use the
            # column's statistics (a cast to float8 would hide them). NULL never passes.
            statement = statement.where(Product.price <= Decimal(repr(float(max_price))))
        excluded = sorted({int(pid) for pid in query_filter.exclude_product_ids})
        if excluded:
            statement = statement.where(ProductImage.product_id.not_in(excluded))
        if q_norm == 0.0 and metric != "euclidean":
            # A zero query is equally far from every row (cosine 1, inner product 0; pgvector
            # would give NaN cosines): the first products by id, as VectorIndex orders ties.
            return statement.order_by(ProductImage.product_id, ProductImage.id).limit(limit)
        distance = self._vector.op(_OPERATORS[metric], return_type=sa.Float)(
            sa.bindparam("query_vector", q, type_=VECTOR(self._dim))
        )
        if exact:
            # A sequential scan sorts anyway: ids break ties, so rows tied at the LIMIT are
            # the ones VectorIndex would keep.
            order = (distance, ProductImage.product_id, ProductImage.id)
            return statement.order_by(*order).limit(limit)
        # Only the distance: anything more and the index's order could not serve the ORDER BY.
        return statement.order_by(distance).limit(limit)

    def _rank(
        self,
        rows: Sequence[Sequence[Any]],
        q_unit: FloatRows,
        q_norm: float,
        k: int,
        metric: Metric,
    ) -> list[Hit]:
        """Best image per product, k products, from the fetched rows: distances recomputed in
        float32 exactly as VectorIndex computes them, re-sorted (relaxed order, ties)."""
        if not rows:
            return []
        products = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))  # (c,)
        images = np.fromiter((row[1] for row in rows), dtype=np.int64, count=len(rows))  # (c,)
        vectors = np.empty((len(rows), self._dim), dtype=np.float32)  # (c, dim) as stored
        for i, row in enumerate(rows):
            vectors[i] = _from_vector_send(row[2], self._dim)
        unit, norms = normalised_with_norms(vectors, self._dim, "stored vectors")
        scores: FloatRows = unit @ q_unit  # (c,) cosine similarities
        distance = distances(scores, norms, q_norm, metric)  # (c,) float32
        return top_k_products(distance, scores, products, images, k)

    # ------------------------------------------------------------------ writing (no-ops)

    def upsert_product(self, facts: ProductFacts) -> None:
        """Nothing to do: searches read the product row itself."""

    def set_active(self, product_id: int, active: bool) -> None:
        """Nothing to do: searches read in_stock and removed themselves."""

    def add_vectors(
        self, *, product_id: int, image_ids: Sequence[int], vectors: npt.ArrayLike
    ) -> None:
        """Nothing to do: the vectors are in `embeddings` (and in its HNSW index) already."""

    def remove_image(self, image_id: int) -> None:
        """Nothing to do: the deleted image row takes its embeddings with it."""
