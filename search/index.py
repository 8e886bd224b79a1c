"""In-memory cosine index over product image vectors (numpy only).

Every product image has one VGG16 avg-pool vector (512 float32). The index keeps them
L2-normalised in one preallocated float32 matrix, so a query is a single matrix-vector product
(cosine similarity = dot product of unit vectors) followed by a filter mask and a top-k over
distinct products. It is loaded once at start (`VectorIndex.build`) and then changed in place
when the catalogue changes; nothing is re-fitted per query.

Distances follow scikit-learn's ``metric="cosine"``: distance = 1 - cosine similarity, smaller
is closer. A zero vector (row or query) has no direction: its similarity to anything is 0, its
distance 1.0, as in scikit-learn.

All public methods take one re-entrant lock, so the bot's reader threads and an admin writer
can share one instance.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Hit", "ProductFacts", "VectorIndex"]

FloatRows = npt.NDArray[np.float32]

_MIN_CAPACITY = 1024  # rows preallocated by an empty index; grows by doubling
_NO_CATEGORY = np.int32(-1)  # category code of a product without a category
_CANDIDATE_FACTOR = 4  # first top-k pass looks at 4k rows, enough unless products have many images
_CHUNK_ROWS = 8192  # rows normalised at a time, bounds the float64 scratch memory of a bulk load


@dataclass(frozen=True, slots=True)
class Hit:
    """One product in a search result, represented by its closest image."""

    product_id: int
    image_id: int
    distance: float  # cosine distance, 0 = identical direction
    similarity: float  # percent, 100 * (1 - distance) clipped to [0, 100]


@dataclass(frozen=True, slots=True)
class ProductFacts:
    """What the search filters need to know of a product."""

    product_id: int
    category: str | None
    price: float  # in the shop's currency; filters compare <= max_price; NaN: not priced,
    # such a product never passes a max_price filter
    active: bool  # in stock and not removed


def _check_facts(facts: ProductFacts) -> None:
    if math.isinf(facts.price):
        raise ValueError(f"product {facts.product_id}: price must be finite, got {facts.price!r}")


def _normalised(vectors: npt.ArrayLike, dim: int, what: str) -> FloatRows:
    """(n, dim) real numbers -> (n, dim) float32 rows of unit length (zero rows stay zero).

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
    for start in range(0, array.shape[0], _CHUNK_ROWS):
        chunk = array[start : start + _CHUNK_ROWS].astype(np.float64)  # (c, dim)
        if not np.isfinite(chunk).all():
            bad = start + int(np.flatnonzero(~np.isfinite(chunk).all(axis=1))[0])
            raise ValueError(f"{what}: row {bad} contains NaN or infinity")
        norms = np.sqrt(np.sum(chunk * chunk, axis=1))  # (c,)
        norms[norms == 0.0] = 1.0  # a zero row divided by 1 stays zero: it never matches
        out[start : start + chunk.shape[0]] = chunk / norms[:, None]
    return out


class VectorIndex:
    """Normalised image vectors with per-row product facts; top-k distinct products by cosine.

    Storage, all of length ``capacity`` and valid in ``[:used]``:
      vectors     (capacity, dim) float32, unit rows (zero rows allowed)
      image_id    (capacity,) int64
      product_id  (capacity,) int64
      live        (capacity,) bool     False once the image is removed (row awaiting compaction)
      active      (capacity,) bool     cached ProductFacts.active of the row's product
      price       (capacity,) float64  cached ProductFacts.price
      category    (capacity,) int32    cached category code, -1 for None
    The caches duplicate the product's facts on each of its rows so that a query builds its
    filter mask with a few vectorised comparisons instead of a Python loop over products.
    """

    def __init__(self, dim: int = 512) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self._dim = dim
        self._lock = threading.RLock()
        self._facts: dict[int, ProductFacts] = {}
        self._category_codes: dict[str, np.int32] = {}
        self._row_of_image: dict[int, int] = {}
        self._rows_of_product: dict[int, set[int]] = {}
        self._used = 0  # rows [0, used) have been written; some may be dead
        self._dead = 0  # rows in [0, used) with live == False
        self._allocate(_MIN_CAPACITY)

    # ------------------------------------------------------------------ storage

    def _allocate(self, capacity: int) -> None:
        """Fresh arrays of `capacity` rows, keeping rows [0, used) (bulk copy, not per add)."""
        n = self._used
        old = getattr(self, "_vectors", None)
        vectors = np.zeros((capacity, self._dim), dtype=np.float32)
        image_id = np.zeros(capacity, dtype=np.int64)
        product_id = np.zeros(capacity, dtype=np.int64)
        live = np.zeros(capacity, dtype=bool)
        active = np.zeros(capacity, dtype=bool)
        price = np.zeros(capacity, dtype=np.float64)
        category = np.full(capacity, _NO_CATEGORY, dtype=np.int32)
        if old is not None and n:
            vectors[:n] = self._vectors[:n]
            image_id[:n] = self._image_id[:n]
            product_id[:n] = self._product_id[:n]
            live[:n] = self._live[:n]
            active[:n] = self._active[:n]
            price[:n] = self._price[:n]
            category[:n] = self._category[:n]
        self._vectors: FloatRows = vectors
        self._image_id: npt.NDArray[np.int64] = image_id
        self._product_id: npt.NDArray[np.int64] = product_id
        self._live: npt.NDArray[np.bool_] = live
        self._active: npt.NDArray[np.bool_] = active
        self._price: npt.NDArray[np.float64] = price
        self._category: npt.NDArray[np.int32] = category

    def _ensure_capacity(self, rows: int) -> None:
        capacity = self._vectors.shape[0]
        if rows <= capacity:
            return
        while capacity < rows:
            capacity *= 2  # doubling: amortised O(1) copies per added row
        self._allocate(capacity)

    def _compact(self) -> None:
        """Drop dead rows; keeps row order, so answers are unchanged."""
        keep = np.flatnonzero(self._live[: self._used])  # (live_rows,) indices of survivors
        n = int(keep.size)
        capacity = max(_MIN_CAPACITY, 2 * n)  # room to grow again before the next doubling
        vectors = np.zeros((capacity, self._dim), dtype=np.float32)
        vectors[:n] = self._vectors[keep]
        image_id = np.zeros(capacity, dtype=np.int64)
        image_id[:n] = self._image_id[keep]
        product_id = np.zeros(capacity, dtype=np.int64)
        product_id[:n] = self._product_id[keep]
        live = np.zeros(capacity, dtype=bool)
        live[:n] = True
        active = np.zeros(capacity, dtype=bool)
        active[:n] = self._active[keep]
        price = np.zeros(capacity, dtype=np.float64)
        price[:n] = self._price[keep]
        category = np.full(capacity, _NO_CATEGORY, dtype=np.int32)
        category[:n] = self._category[keep]
        self._vectors, self._image_id, self._product_id = vectors, image_id, product_id
        self._live, self._active, self._price, self._category = live, active, price, category
        self._used, self._dead = n, 0
        self._row_of_image = {int(image): row for row, image in enumerate(image_id[:n].tolist())}
        self._rows_of_product = {pid: set() for pid in self._rows_of_product}
        for row, pid in enumerate(product_id[:n].tolist()):
            self._rows_of_product[int(pid)].add(row)

    def _category_code(self, category: str | None) -> np.int32:
        if category is None:
            return _NO_CATEGORY
        code = self._category_codes.get(category)
        if code is None:
            code = np.int32(len(self._category_codes))
            self._category_codes[category] = code
        return code

    def _write_row_facts(self, rows: npt.NDArray[np.intp], facts: ProductFacts) -> None:
        """Copy a product's facts into the per-row caches of `rows` (its image rows)."""
        self._active[rows] = facts.active
        self._price[rows] = facts.price
        self._category[rows] = self._category_code(facts.category)

    def _product_rows(self, product_id: int) -> npt.NDArray[np.intp]:
        rows = self._rows_of_product.get(product_id, set())
        return np.fromiter(sorted(rows), dtype=np.intp, count=len(rows))

    # ------------------------------------------------------------------ reading

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        """Number of image vectors in the index (removed images not counted)."""
        with self._lock:
            return self._used - self._dead

    def product_count(self, *, active_only: bool = True) -> int:
        """Number of products with at least one image vector (only active ones by default)."""
        with self._lock:
            return sum(
                1
                for pid, rows in self._rows_of_product.items()
                if rows and (not active_only or self._facts[pid].active)
            )

    def product_vectors(self, product_id: int) -> FloatRows:
        """(m, dim) copy of the normalised vectors of a product's images, by image id.

        m is 0 for a known product without images; an unknown product raises KeyError.
        """
        with self._lock:
            if product_id not in self._facts:
                raise KeyError(f"unknown product {product_id}")
            rows = self._product_rows(product_id)  # (m,)
            order = np.argsort(self._image_id[rows], kind="stable")
            return self._vectors[rows[order]].copy()

    def search(
        self,
        query: npt.ArrayLike,
        *,
        k: int = 8,
        category: str | None = None,
        max_price: float | None = None,
        include_inactive: bool = False,
        exclude_product_ids: Collection[int] = (),
    ) -> list[Hit]:
        """The k products closest to `query` ((dim,) floats), one hit each (its best image).

        Ascending cosine distance, ties broken by product id (then image id). Returns fewer than
        k hits when fewer products pass the filters; a zero query is at distance 1.0 from all.
        """
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if max_price is not None and math.isnan(max_price):
            raise ValueError("max_price must not be NaN")
        q = np.asarray(query)
        if q.ndim != 1 or q.shape[0] != self._dim:
            raise ValueError(f"query: expected shape ({self._dim},), got {q.shape}")
        q_unit = _normalised(q[None, :], self._dim, "query")[0]  # (dim,) float32
        if k == 0:
            return []

        with self._lock:
            n = self._used
            # The filter mask over used rows, (n,) bool: dead rows never pass.
            mask = self._live[:n].copy()
            if not include_inactive:
                mask &= self._active[:n]
            if category is not None:
                code = self._category_codes.get(category)
                if code is None:
                    return []  # no product ever had that category
                mask &= self._category[:n] == code
            if max_price is not None:
                mask &= self._price[:n] <= max_price
            for pid in exclude_product_ids:
                rows = self._rows_of_product.get(pid)
                if rows:
                    mask[list(rows)] = False
            cand = np.flatnonzero(mask)  # (c,) rows that pass the filters
            if cand.size == 0:
                return []
            # One matrix-vector product: cosine similarity of every used row, (n,) float32.
            scores = self._vectors[:n] @ q_unit
            cand_scores = scores[cand]  # (c,)
            cand_products = self._product_id[cand]  # (c,) int64, copied out of the lock's arrays
            cand_images = self._image_id[cand]  # (c,) int64

        # From here on only local arrays are used, so the lock is no longer needed.
        # distance = 1 - score, in float32; max(0, .) so rounding never gives a negative distance.
        cand_dist = np.maximum(np.float32(0.0), np.float32(1.0) - cand_scores)  # (c,) float32
        return _top_k_products(cand_dist, cand_scores, cand_products, cand_images, k)

    # ------------------------------------------------------------------ writing

    def upsert_product(self, facts: ProductFacts) -> None:
        """Add a product, or change its category/price/active flag (its rows follow at once)."""
        _check_facts(facts)
        with self._lock:
            self._facts[facts.product_id] = facts
            rows = self._rows_of_product.setdefault(facts.product_id, set())
            if rows:
                self._write_row_facts(self._product_rows(facts.product_id), facts)

    def set_active(self, product_id: int, active: bool) -> None:
        """Hide (out of stock / removed) or show again a product; KeyError if unknown."""
        with self._lock:
            facts = self._facts.get(product_id)
            if facts is None:
                raise KeyError(f"unknown product {product_id}")
            self.upsert_product(dataclasses.replace(facts, active=active))

    def add_vectors(
        self, *, product_id: int, image_ids: Sequence[int], vectors: npt.ArrayLike
    ) -> None:
        """Add (or replace) image vectors of an upserted product; (n,) ids, (n, dim) floats.

        Rows are L2-normalised on the way in. Re-adding an existing image id replaces its vector
        (and moves it to `product_id` if it belonged to another product). ValueError, with
        nothing changed, if the product is unknown, a row is NaN/inf, shapes disagree or an
        image id is repeated within the call.
        """
        ids = [int(image) for image in image_ids]
        unit = _normalised(vectors, self._dim, "vectors")  # (n, dim) float32, validated
        if unit.shape[0] != len(ids):
            raise ValueError(f"{len(ids)} image ids but {unit.shape[0]} vectors")
        if len(set(ids)) != len(ids):
            raise ValueError("image ids repeat within one call")
        with self._lock:
            facts = self._facts.get(product_id)
            if facts is None:
                raise ValueError(f"product {product_id} must be upserted before its vectors")
            new = [i for i, image in enumerate(ids) if image not in self._row_of_image]
            self._ensure_capacity(self._used + len(new))
            rows = np.empty(len(ids), dtype=np.intp)  # (n,) target row of each given vector
            for i, image in enumerate(ids):
                row = self._row_of_image.get(image)
                if row is None:
                    row = self._used
                    self._used += 1
                    self._row_of_image[image] = row
                    self._image_id[row] = image
                    self._live[row] = True
                else:
                    old_product = int(self._product_id[row])
                    self._rows_of_product[old_product].discard(row)
                self._product_id[row] = product_id
                self._rows_of_product[product_id].add(row)
                rows[i] = row
            self._vectors[rows] = unit
            self._write_row_facts(rows, facts)

    def remove_image(self, image_id: int) -> None:
        """Remove one image's vector; KeyError if it is not in the index."""
        with self._lock:
            row = self._row_of_image.pop(image_id, None)
            if row is None:
                raise KeyError(f"unknown image {image_id}")
            self._rows_of_product[int(self._product_id[row])].discard(row)
            self._live[row] = False
            self._dead += 1
            if 2 * self._dead > self._used:
                self._compact()

    @classmethod
    def build(
        cls,
        *,
        facts: Iterable[ProductFacts],
        image_ids: npt.ArrayLike,
        product_ids: npt.ArrayLike,
        vectors: npt.ArrayLike,
    ) -> VectorIndex:
        """Bulk load at start: (n,) image ids, (n,) product ids, (n, dim) vectors; dim from them.

        Every product id must appear in `facts` (later facts for the same product win);
        ValueError on repeated image ids, unknown products, mismatched lengths or NaN/inf.
        """
        array = np.asarray(vectors)
        if array.ndim != 2:
            raise ValueError(f"vectors: expected shape (n, dim), got {array.shape}")
        index = cls(dim=int(array.shape[1]))
        for fact in facts:
            index.upsert_product(fact)
        images = np.asarray(image_ids).astype(np.int64, copy=False).reshape(-1)  # (n,)
        products = np.asarray(product_ids).astype(np.int64, copy=False).reshape(-1)  # (n,)
        n = int(array.shape[0])
        if images.size != n or products.size != n:
            raise ValueError(f"{images.size} image ids, {products.size} product ids, {n} vectors")
        if np.unique(images).size != n:
            raise ValueError("image ids repeat")
        unknown = set(np.unique(products).tolist()) - index._facts.keys()
        if unknown:
            raise ValueError(f"vectors of products without facts: {sorted(unknown)[:10]}")
        unit = _normalised(array, index._dim, "vectors")  # (n, dim) float32
        index._ensure_capacity(n)
        index._vectors[:n] = unit
        index._image_id[:n] = images
        index._product_id[:n] = products
        index._live[:n] = True
        index._used = n
        index._row_of_image = {int(image): row for row, image in enumerate(images.tolist())}
        for row, pid in enumerate(products.tolist()):
            index._rows_of_product[int(pid)].add(row)
        # Per-row fact caches in one go: facts per distinct product, spread by `inverse`.
        distinct, inverse = np.unique(products, return_inverse=True)  # (p,), (n,)
        ordered = [index._facts[int(pid)] for pid in distinct.tolist()]
        index._active[:n] = np.array([f.active for f in ordered], dtype=bool)[inverse]
        index._price[:n] = np.array([f.price for f in ordered], dtype=np.float64)[inverse]
        codes = [index._category_code(f.category) for f in ordered]
        index._category[:n] = np.array(codes, dtype=np.int32)[inverse]
        return index


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
            part = np.argpartition(dist, m - 1)[:m]  # (m,) the m smallest, unordered
            sel = np.flatnonzero(dist <= dist[part].max())  # (>= m,) plus ties at the boundary
        else:
            sel = np.arange(c)
        # Sort by distance, then product id, then image id (lexsort: last key is primary).
        order = sel[np.lexsort((images[sel], products[sel], dist[sel]))]
        # np.unique gives each product's first index in `order`, i.e. its best image.
        _, first = np.unique(products[order], return_index=True)
        if first.size >= k or sel.size >= c:
            break
        m = min(c, 2 * m)
    best = order[np.sort(first)[:k]]  # (<= k,) rows, ascending distance
    return [
        Hit(
            product_id=int(products[row]),
            image_id=int(images[row]),
            distance=float(dist[row]),
            similarity=100.0 * min(1.0, max(0.0, float(scores[row]))),
        )
        for row in best.tolist()
    ]
