"""The vector maths every index ranks with: normalising rows, the three distances, and the top k
distinct products; `pairwise_distances` is the same definition for whole matrices (evaluation).

Distances follow scikit-learn's ``metric="cosine"``: distance = 1 - cosine similarity, smaller
is closer. A zero vector (row or query) has no direction: its similarity to anything is 0, its
distance 1.0, as in scikit-learn. ``euclidean`` (|q - x|) and ``inner_product`` (-(q . x)) rank
the vectors as given.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from search.index.protocol import METRICS, FloatRows, Hit, Metric

__all__ = [
    "CANDIDATE_FACTOR",
    "distances",
    "l2_normalise",
    "normalised",
    "normalised_query",
    "normalised_with_norms",
    "pairwise_distances",
    "top_k_products",
]

FloatArray = npt.NDArray[np.float64]

CANDIDATE_FACTOR = 4  # first top-k pass looks at 4k rows, enough unless products have many images
_CHUNK_ROWS = 8192  # rows normalised at a time, bounds the float64 scratch memory of a bulk load


def l2_normalise(vectors: npt.ArrayLike) -> FloatArray:
    """(n, d) -> (n, d) float64 rows of unit length; zero rows stay zero (as in the index)."""
    array = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    norms[norms == 0.0] = 1.0
    return np.asarray(array / norms, dtype=np.float64)


def pairwise_distances(
    queries: npt.ArrayLike, items: npt.ArrayLike, metric: Metric = "cosine"
) -> FloatArray:
    """(q, d) queries x (n, d) items -> (q, n) float64 distances, smaller is closer.

    cosine:        1 - cos(q, x), in [0, 2]; a zero vector is at distance 1 from everything
                   (as in scikit-learn and `search.index.protocol`).
    euclidean:     |q - x| on the vectors as given (not normalised).
    inner_product: -(q . x), so that the largest dot product ranks first; may be negative.
    """
    q = np.asarray(queries, dtype=np.float64)
    x = np.asarray(items, dtype=np.float64)
    if q.ndim != 2 or x.ndim != 2 or q.shape[1] != x.shape[1]:
        raise ValueError(f"expected (q, d) and (n, d) arrays, got {q.shape} and {x.shape}")
    if metric == "cosine":
        return np.asarray(1.0 - l2_normalise(q) @ l2_normalise(x).T, dtype=np.float64)
    if metric == "euclidean":
        squared = (
            np.sum(q * q, axis=1)[:, None] + np.sum(x * x, axis=1)[None, :] - 2.0 * (q @ x.T)
        )  # (q, n); the expansion can round slightly below 0 for identical vectors
        return np.asarray(np.sqrt(np.maximum(squared, 0.0)), dtype=np.float64)
    if metric == "inner_product":
        return np.asarray(-(q @ x.T), dtype=np.float64)
    raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")


def normalised(vectors: npt.ArrayLike, dim: int, what: str) -> FloatRows:
    """(n, dim) real numbers -> (n, dim) float32 rows of unit length (zero rows stay zero)."""
    return normalised_with_norms(vectors, dim, what)[0]


def normalised_with_norms(
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


def normalised_query(query: npt.NDArray[Any], dim: int) -> tuple[FloatRows, float]:
    """`_normalised` of one (dim,) row, the same numbers, without the bulk path's overhead;
    also its original length."""
    if query.dtype.kind in "fiu":
        q64 = query.astype(np.float64)  # (dim,)
        norm = np.sqrt(np.sum(q64 * q64))
        if np.isfinite(norm):
            out: FloatRows = (q64 / norm if norm != 0.0 else q64).astype(np.float32)
            return out, float(norm)
    unit, lengths = normalised_with_norms(query[None, :], dim, "query")  # the precise error
    return unit[0], float(lengths[0])


def distances(
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


def top_k_products(
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
    m = min(c, CANDIDATE_FACTOR * k)
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
