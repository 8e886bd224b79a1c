"""The k-nearest query inside PostgreSQL with pgvector: `PgVectorIndex`, a `SearchIndex`.

On PostgreSQL `embeddings.index_vector` is a pgvector `vector` without a fixed dimension (one
column for every model); each model gets a partial HNSW index over the vector cast to its own
dimension, e.g. (migration 0003)

    CREATE INDEX ix_embeddings_hnsw_vgg16_avgpool ON embeddings USING hnsw
        ((index_vector::vector(512)) vector_cosine_ops) WHERE model_name = 'vgg16_avgpool'

A search is one SQL statement: embeddings -> product_images -> products, every filter in the
WHERE clause, ordered by the metric's operator on `index_vector::vector(dim)` (cosine `<=>`,
euclidean `<->`, inner product `<#>`, which is already -(q . x)), LIMIT n. The expression and the
model name (a literal, not a parameter: the planner must prove the partial index's predicate)
are exactly those of the index, so the cosine query can walk the HNSW graph; the other metrics
have no index and scan. Whether it does is the planner's choice, from the table's statistics:
on a small table (below ~1,000 vectors) or with a very selective filter (a category of a few
dozen products) it reads the few rows and sorts them, which is both exact and cheaper; from a
few thousand vectors on it walks the graph (tests/test_pgindex.py, docs/benchmarks.md).
Settings for the transaction only (SET LOCAL, one round trip):

- plan_cache_mode = force_custom_plan: psycopg prepares a statement run 5 times, and a generic
  plan (LIMIT and filter values unknown) could give up the index; a custom plan costs ~0.3 ms;
- hnsw.ef_search: candidates kept while walking the graph (recall against speed);
- hnsw.iterative_scan = relaxed_order: when the filters reject most of the rows the graph
  yields, the scan goes on (up to hnsw.max_scan_tuples) instead of stopping after ef_search
  rows, so a narrow filter still fills the LIMIT. The rows then come in nearly, not strictly,
  ascending order: they are re-sorted here;
- `exact=True`: enable_indexscan = off, an exact sequential scan (ties ordered by ids as well).

A product with several images would take several of the n rows, so n starts at 4k; the rows
are deduplicated to one hit per product (its best image) in Python, and the query is repeated
with a larger n only when fewer than k products came back and the query returned all n rows.
When the HNSW scan gives up early (fewer than n rows, fewer than k products: a filter so narrow
that hnsw.max_scan_tuples rows hold fewer than k of its products), the exact query answers, as
`VectorIndex` falls back from its ANN to the exact scan.

Each fetched row carries its vector (2 KB at 512 dimensions), and distances and similarities are
recomputed from it with the very functions `VectorIndex` uses (`search.index._distances`,
`_top_k_products`), so hits, distances (float32) and tie-breaking are those of the in-memory
index; PostgreSQL only chooses the candidate rows. One difference remains: a vector of length 0
has no direction; pgvector gives it a NaN cosine distance (ranked last) and the HNSW index
leaves it out, while `VectorIndex` puts it at distance 1.0. Post-processed image vectors are
never zero.

The database is the truth: the write methods are no-ops (every search reads the committed
rows), and nothing is loaded at start.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Collection, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from pgvector.sqlalchemy import VECTOR
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from db.models import Embedding, Product, ProductImage
from search.index import (
    FloatRows,
    Hit,
    ProductFacts,
    _distances,
    _normalised_query,
    _normalised_with_norms,
    _top_k_products,
)
from search.postprocess import Metric

__all__ = [
    "HNSW_MAX_DIM",
    "PgVectorIndex",
    "ensure_hnsw_index",
    "hnsw_index_name",
    "index_info",
]

log = logging.getLogger(__name__)

HNSW_MAX_DIM = 2000  # pgvector's limit for an HNSW index over `vector`
_CANDIDATE_FACTOR = 4  # first LIMIT is 4k rows: enough unless products have many images
_GROWTH = 4  # the LIMIT grows this much per repeat (each repeat walks the graph again)
_MAX_IDENTIFIER = 63  # PostgreSQL truncates longer identifiers
_MODEL_NAME = re.compile(r"[A-Za-z0-9_]+")  # a model name that is safe as a literal and a name
_VECTOR_LITERAL = re.compile(r"'\[[^']*\]'::vector")
_OPERATORS: dict[Metric, str] = {"cosine": "<=>", "euclidean": "<->", "inner_product": "<#>"}


def hnsw_index_name(model_name: str) -> str:
    """`ix_embeddings_hnsw_<model_name>`; a name too long for PostgreSQL is shortened and
    given a hash suffix, so two long model names never share an index."""
    _check_model_name(model_name)
    name = f"ix_embeddings_hnsw_{model_name}"
    if len(name) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(model_name.encode()).hexdigest()[:8]
    return f"{name[: _MAX_IDENTIFIER - 9]}_{digest}"


def _check_model_name(model_name: str) -> None:
    # The name goes into DDL and (as a literal) into the search query: letters, digits, _ only.
    if not _MODEL_NAME.fullmatch(model_name):
        raise ValueError(f"model name must be letters, digits and _ only, got {model_name!r}")


def _connection(connection_or_session: Connection | Session) -> Connection:
    if isinstance(connection_or_session, Session):
        return connection_or_session.connection()
    return connection_or_session


def ensure_hnsw_index(
    connection_or_session: Connection | Session,
    *,
    model_name: str,
    dim: int,
    maintenance_work_mem: str | None = None,
) -> bool:
    """Create the model's partial HNSW cosine index if it is missing; True if created.

    The same form as migration 0003's index for vgg16_avgpool, for a backbone that becomes
    active later. Runs in the caller's transaction (the caller commits); the build locks
    `embeddings` against writes while it runs (seconds at 10k vectors, minutes at 1M).
    `maintenance_work_mem` (e.g. "2GB"): memory for this build only; a graph that does not
    fit is built much more slowly. False, with a warning, when `dim` exceeds what pgvector's
    HNSW supports (2000): that model's searches then scan exactly.
    """
    if dim <= 0:
        raise ValueError(f"dim must be positive, got {dim}")
    name = hnsw_index_name(model_name)
    connection = _connection(connection_or_session)
    if connection.dialect.name != "postgresql":
        raise ValueError(f"HNSW indexes need PostgreSQL, not {connection.dialect.name}")
    if _index_exists(connection, name):
        return False
    if dim > HNSW_MAX_DIM:
        log.warning(
            "no HNSW index for %s: %d dimensions, pgvector's HNSW takes at most %d; "
            "its searches scan exactly",
            model_name,
            dim,
            HNSW_MAX_DIM,
        )
        return False
    if maintenance_work_mem is not None:
        connection.execute(
            sa.select(sa.func.set_config("maintenance_work_mem", maintenance_work_mem, True))
        )
    # DDL takes no bind parameters: the name and the model are checked above (letters, digits
    # and _ only), the dim is an int.
    connection.execute(
        sa.text(
            f"CREATE INDEX IF NOT EXISTS {name} ON embeddings USING hnsw "
            f"((index_vector::vector({int(dim)})) vector_cosine_ops) "
            f"WHERE model_name = '{model_name}'"
        )
    )
    log.info("HNSW index %s created (%d dimensions)", name, dim)
    return True


def _index_exists(connection: Connection, name: str) -> bool:
    found = connection.execute(sa.select(sa.func.to_regclass(name).is_not(None))).scalar_one()
    return bool(found)


def index_info(connection_or_session: Connection | Session, *, model_name: str) -> dict[str, Any]:
    """For logs: {"index": name, "present": bool, "valid": bool, "bytes": index size,
    "rows": the model's embeddings with an index vector}."""
    connection = _connection(connection_or_session)
    name = hnsw_index_name(model_name)
    rows = connection.execute(
        sa.select(sa.func.count())
        .select_from(Embedding)
        .where(Embedding.model_name == model_name, Embedding.index_vector.is_not(None))
    ).scalar_one()
    info: dict[str, Any] = {"index": name, "present": False, "valid": False, "bytes": 0}
    if connection.dialect.name == "postgresql":
        found = connection.execute(
            sa.text(
                "SELECT i.indisvalid, pg_relation_size(i.indexrelid) FROM pg_index i "
                "WHERE i.indexrelid = to_regclass(:name)"
            ),
            {"name": name},
        ).first()
        if found is not None:
            info.update(present=True, valid=bool(found[0]), bytes=int(found[1]))
    info["rows"] = int(rows)
    return info


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

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        model_name: str,
        dim: int,
        ef_search: int = 100,
        exact: bool = False,
    ) -> None:
        _check_model_name(model_name)
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
        category: str | None = None,
        max_price: float | None = None,
        include_inactive: bool = False,
        exclude_product_ids: Collection[int] = (),
        metric: Metric = "cosine",
    ) -> list[Hit]:
        """The k products closest to `query` ((dim,) floats), one hit each (its best image);
        the same answer as `VectorIndex.search` (up to the HNSW's approximation unless
        `exact`): ascending distance in `metric`, ties by product id then image id, fewer
        than k hits when fewer products pass the filters."""
        q_sql, q_unit, q_norm = self._check_query(query, k, max_price, metric)
        if k == 0:
            return []
        exact = self._exact
        n = _CANDIDATE_FACTOR * k
        with self._sessions() as session, session.begin():
            self._configure(session, exact=exact)
            while True:
                statement = self._statement(
                    q_sql,
                    q_norm,
                    limit=n,
                    exact=exact,
                    category=category,
                    max_price=max_price,
                    include_inactive=include_inactive,
                    exclude_product_ids=exclude_product_ids,
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
                n = _CANDIDATE_FACTOR * k
                self._configure(session, exact=True)

    def explain(
        self,
        query: npt.ArrayLike,
        *,
        k: int = 8,
        category: str | None = None,
        max_price: float | None = None,
        include_inactive: bool = False,
        exclude_product_ids: Collection[int] = (),
        metric: Metric = "cosine",
        analyze: bool = False,
    ) -> str:
        """PostgreSQL's plan for the first query `search` would run (EXPLAIN [ANALYZE]), the
        query vector shortened to '[...]': for checking that the HNSW index is used."""
        q_sql, _, q_norm = self._check_query(query, k, max_price, metric)
        statement = self._statement(
            q_sql,
            q_norm,
            limit=_CANDIDATE_FACTOR * max(k, 1),
            exact=self._exact,
            category=category,
            max_price=max_price,
            include_inactive=include_inactive,
            exclude_product_ids=exclude_product_ids,
            metric=metric,
        )
        with self._sessions() as session, session.begin():
            self._configure(session, exact=self._exact)
            connection = session.connection()
            # Values inlined: the plan is the custom plan `search` gets for the same values.
            compiled = statement.compile(
                dialect=connection.dialect, compile_kwargs={"literal_binds": True}
            )
            prefix = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
            cursor = connection.exec_driver_sql(prefix + str(compiled))
            plan = "\n".join(str(row[0]) for row in cursor)
        return _VECTOR_LITERAL.sub("'[...]'::vector", plan)  # not 512 numbers per line

    # ------------------------------------------------------------------ the query

    def _check_query(
        self, query: npt.ArrayLike, k: int, max_price: float | None, metric: Metric
    ) -> tuple[FloatRows, FloatRows, float]:
        """(what the SQL compares, the unit query, its length); (dim,) float32 each.
        ValueError like `VectorIndex.search`.

        Cosine and inner-product order do not depend on the query's length, so the SQL gets
        the unit query (no float32 overflow whatever the scale); euclidean needs it as given.
        """
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if max_price is not None and math.isnan(max_price):
            raise ValueError("max_price must not be NaN")
        if metric not in _OPERATORS:
            raise ValueError(f"unknown metric {metric!r}")
        q = np.asarray(query)
        if q.ndim != 1 or q.shape[0] != self._dim:
            raise ValueError(f"query: expected shape ({self._dim},), got {q.shape}")
        q_unit, q_norm = _normalised_query(q, self._dim)
        q_sql = q.astype(np.float32) if metric == "euclidean" else q_unit
        return q_sql, q_unit, q_norm

    def _configure(self, session: Session, *, exact: bool) -> None:
        """Settings for this transaction only (set_config(..., true) = SET LOCAL), in one
        round trip."""
        # Every execution planned with its values: psycopg prepares a statement run 5 times,
        # and PostgreSQL's generic plan (LIMIT and filters unknown) may give up the index.
        settings = [("plan_cache_mode", "force_custom_plan")]
        if exact:
            settings.append(("enable_indexscan", "off"))
        else:
            settings += [
                ("hnsw.ef_search", str(self._ef_search)),
                ("hnsw.iterative_scan", "relaxed_order"),
            ]
        session.execute(
            sa.select(*(sa.func.set_config(name, value, True) for name, value in settings))
        )

    def _statement(
        self,
        q: FloatRows,
        q_norm: float,
        *,
        limit: int,
        exact: bool,
        category: str | None,
        max_price: float | None,
        include_inactive: bool,
        exclude_product_ids: Collection[int],
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
        if not include_inactive:
            statement = statement.where(Product.in_stock.is_(True), Product.removed.is_(False))
        if category is not None:
            statement = statement.where(Product.category == category)
        if max_price is not None:
            # numeric <= the shortest decimal of the float: the same answer as VectorIndex's
            # float(price) <= max_price for 2-decimal prices, and the planner can use the
            # column's statistics (a cast to float8 would hide them). NULL never passes.
            statement = statement.where(Product.price <= Decimal(repr(float(max_price))))
        excluded = sorted({int(pid) for pid in exclude_product_ids})
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
        unit, norms = _normalised_with_norms(vectors, self._dim, "stored vectors")
        scores: FloatRows = unit @ q_unit  # (c,) cosine similarities
        distances = _distances(scores, norms, q_norm, metric)  # (c,) float32
        return _top_k_products(distances, scores, products, images, k)

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
