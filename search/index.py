"""What every search index shares: the `SearchIndex` protocol, `Hit` and `ProductFacts`, and the
vector maths both implementations use (normalising, distances, top-k distinct products).

The implementations: `search.vector_index.VectorIndex` (in memory, numpy) and
`search.pgindex.PgVectorIndex` (the k-nearest query inside PostgreSQL).

Distances follow scikit-learn's ``metric="cosine"``: distance = 1 - cosine similarity, smaller
is closer. A zero vector (row or query) has no direction: its similarity to anything is 0, its
distance 1.0, as in scikit-learn. ``euclidean`` (|q - x|) and ``inner_product`` (-(q . x)) rank
the vectors as given; `Hit.similarity` is always the cosine similarity in percent (what
customers see).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from search.postprocess import Metric

__all__ = ["FloatRows", "Hit", "ProductFacts", "SearchIndex"]

FloatRows = npt.NDArray[np.float32]

_CANDIDATE_FACTOR = 4  # first top-k pass looks at 4k rows, enough unless products have many images
_CHUNK_ROWS = 8192  # rows normalised at a time, bounds the float64 scratch memory of a bulk load


@dataclass(frozen=True, slots=True)
class Hit:
    """One product in a search result, represented by its closest image."""

    product_id: int
    image_id: int
    distance: float  # in the search's metric, smaller is closer (cosine: 0 = same direction)
    similarity: float  # cosine similarity in percent, clipped to [0, 100], whatever the metric


@dataclass(frozen=True, slots=True)
class ProductFacts:
    """What the search filters need to know of a product."""

    product_id: int
    category: str | None
    price: float  # in the shop's currency; filters compare <= max_price; NaN: not priced,
    # such a product never passes a max_price filter
    active: bool  # in stock and not removed


class SearchIndex(Protocol):
    """What the search service needs of an index: the in-memory
    `search.vector_index.VectorIndex`, or `search.pgindex.PgVectorIndex` (the k-nearest query
    inside PostgreSQL).

    Vectors are in the model's index space (post-processed, not necessarily unit length).
    The write methods are called after the database commit; an index that reads the database
    itself (pgvector) treats them as no-ops and says so with `reads_database`.
    """

    # True: the index answers from the database itself, so other processes' changes need no
    # syncing into it; False: it holds the vectors in this process.
    reads_database: bool

    @property
    def dim(self) -> int: ...

    def image_ids_of(self, product_id: int) -> list[int]: ...

    def __len__(self) -> int: ...

    def product_count(self, *, active_only: bool = True) -> int: ...

    def product_vectors(self, product_id: int) -> FloatRows: ...

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
    ) -> list[Hit]: ...

    def upsert_product(self, facts: ProductFacts) -> None: ...

    def add_vectors(
        self, *, product_id: int, image_ids: Sequence[int], vectors: npt.ArrayLike
    ) -> None: ...

    def remove_image(self, image_id: int) -> None: ...


def _check_facts(facts: ProductFacts) -> None:
    if math.isinf(facts.price):
        raise ValueError(f"product {facts.product_id}: price must be finite, got {facts.price!r}")


def _normalised(vectors: npt.ArrayLike, dim: int, what: str) -> FloatRows:
    """(n, dim) real numbers -> (n, dim) float32 rows of unit length (zero rows stay zero)."""
    return _normalised_with_norms(vectors, dim, what)[0]


def _normalised_with_norms(
    vectors: npt.ArrayLike, dim: int, what: str
) -> tuple[FloatRows, FloatRows]:
    """(n, dim) real numbers -> ((n, dim) float32 unit rows, (n,) float32 original lengths).

    Raises ValueError on a wrong shape or dtype, or on any NaN/inf, before anything is changed.
    The norm is taken in float64 (no overflow for large activations, no precision loss), then
    the result is stored as float32 like the matrix it goes into.
    """
    array = np.asarray(vectors)
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{what}: expected real numbers, got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"{what}: expected shape (n, {dim}), got {array.shape}")
    out = np.empty(array.shape, dtype=np.float32)  # (n, dim)
    lengths = np.empty(array.shape[0], dtype=np.float32)  # (n,)
    for start in range(0, array.shape[0], _CHUNK_ROWS):
        chunk = array[start : start + _CHUNK_ROWS].astype(np.float64)  # (c, dim)
        if not np.isfinite(chunk).all():
            bad = start + int(np.flatnonzero(~np.isfinite(chunk).all(axis=1))[0])
            raise ValueError(f"{what}: row {bad} contains NaN or infinity")
        norms = np.sqrt(np.sum(chunk * chunk, axis=1))  # (c,)
        lengths[start : start + chunk.shape[0]] = norms
        norms[norms == 0.0] = 1.0  # a zero row divided by 1 stays zero: it never matches
        out[start : start + chunk.shape[0]] = chunk / norms[:, None]
    return out, lengths


def _normalised_query(query: npt.NDArray[Any], dim: int) -> tuple[FloatRows, float]:
    """`_normalised` of one (dim,) row, the same numbers, without the bulk path's overhead;
    also its original length."""
    if query.dtype.kind in "fiu":
        q64 = query.astype(np.float64)  # (dim,)
        norm = np.sqrt(np.sum(q64 * q64))
        if np.isfinite(norm):
            out: FloatRows = (q64 / norm if norm != 0.0 else q64).astype(np.float32)
            return out, float(norm)
    unit, lengths = _normalised_with_norms(query[None, :], dim, "query")  # the precise error
    return unit[0], float(lengths[0])


def _distances(
    scores: FloatRows, norms: FloatRows, q_norm: float, metric: Metric
) -> npt.NDArray[np.float32]:
    """(c,) cosine similarities of unit rows, (c,) the rows' lengths -> (c,) float32 distances.

    cosine: 1 - s (never negative after rounding); euclidean: |q - x| from the law of cosines,
    |q|^2 + |x|^2 - 2|q||x|s; inner_product: -(q . x) = -|q||x|s (may be negative).
    """
    if metric == "cosine":
        cosine: npt.NDArray[np.float32] = np.maximum(np.float32(0.0), np.float32(1.0) - scores)
        return cosine
    qn = np.float32(q_norm)
    if metric == "euclidean":
        squared = qn * qn + norms * norms - np.float32(2.0) * qn * norms * scores
        return np.sqrt(np.maximum(np.float32(0.0), squared)).astype(np.float32)
    if metric == "inner_product":
        return (-(qn * norms * scores)).astype(np.float32)
    raise ValueError(f"unknown metric {metric!r}")


def _top_k_products(
    dist: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    products: npt.NDArray[np.int64],
    images: npt.NDArray[np.int64],
    k: int,
) -> list[Hit]:
    """Exact top-k distinct products from (c,) candidate rows, best image per product.

    Looks at the m = 4k closest rows first and doubles m only when they hold fewer than k
    distinct products. Rows tied with the m-th distance are always included, so the answer is
    exact and does not depend on how argpartition orders ties: any product left out has every
    image farther than all rows looked at, hence farther than each of the k products found.
    """
    c = int(dist.size)
    m = min(c, _CANDIDATE_FACTOR * k)
    while True:
        if m < c:
            # After argpartition, position m - 1 holds the m-th smallest distance.
            threshold = dist[np.argpartition(dist, m - 1)[m - 1]]
            sel = np.flatnonzero(dist <= threshold)  # (>= m,) the m smallest, plus ties
        else:
            sel = np.arange(c)
        # Sort by distance, then product id, then image id (lexsort: last key is primary).
        order = sel[np.lexsort((images[sel], products[sel], dist[sel]))]
        # Each product's first row in `order` is its best image; keep the first k products.
        # (A Python loop over these few dozen rows is cheaper than np.unique's machinery.)
        seen: set[int] = set()
        best: list[int] = []
        for row, product in zip(order.tolist(), products[order].tolist(), strict=True):
            if product not in seen:
                seen.add(product)
                best.append(row)
                if len(best) == k:
                    break
        if len(best) >= k or sel.size >= c:
            break
        m = min(c, 2 * m)
    return [
        Hit(
            product_id=products.item(row),
            image_id=images.item(row),
            distance=dist.item(row),
            similarity=100.0 * min(1.0, max(0.0, scores.item(row))),
        )
        for row in best
    ]
