"""In-memory cosine index over product image vectors (numpy only).

Every product image has one VGG16 avg-pool vector (512 float32). The index keeps them
L2-normalised in one preallocated float32 matrix, so a query is a single matrix-vector product
(cosine similarity = dot product of unit vectors) followed by a filter mask and a top-k over
distinct products. It is loaded once at start (`VectorIndex.build`) and then changed in place
when the catalogue changes; nothing is re-fitted per query.

Large catalogues (`ann_min_rows` rows and more, 8192 by default) also get an approximate index
(`search.ann.IvfAnn`, faiss IVF with 8-bit codes), built in a background thread from a snapshot
and then kept up to date with every change. A query then takes the ANN's few hundred candidate
rows, applies the same filters and re-ranks them exactly with the float32 rows; when they hold
fewer than k products that pass the filters (a narrow filter), it scans every row exactly, as
it does while the ANN is being built. Recall@8 against the exact scan is measured in
docs/benchmarks.md.

Distances follow scikit-learn's ``metric="cosine"``: distance = 1 - cosine similarity, smaller
is closer. A zero vector (row or query) has no direction: its similarity to anything is 0, its
distance 1.0, as in scikit-learn. The index also keeps each row's original length, so a search
may rank by ``euclidean`` (|q - x|) or ``inner_product`` (-(q . x)) on the vectors as given
instead; `Hit.similarity` is always the cosine similarity in percent (what customers see).

All public methods take one re-entrant lock, so the bot's reader threads and an admin writer
can share one instance.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from search.ann import AnnBuild, IvfAnn
from search.postprocess import Metric

__all__ = ["Hit", "ProductFacts", "SearchIndex", "VectorIndex"]

FloatRows = npt.NDArray[np.float32]

_MIN_CAPACITY = 1024  # rows preallocated by an empty index; grows by doubling
_NO_CATEGORY = np.int32(-1)  # category code of a product without a category
_CANDIDATE_FACTOR = 4  # first top-k pass looks at 4k rows, enough unless products have many images
_CHUNK_ROWS = 8192  # rows normalised at a time, bounds the float64 scratch memory of a bulk load
ANN_MIN_ROWS = 8192  # live rows from which the approximate index is built and used
_ANN_CANDIDATES = 64  # candidate rows asked of the ANN per query (at least 8k)
_ANN_MAX_CANDIDATES = 4096  # beyond this a filtered query scans exactly instead

log = logging.getLogger(__name__)


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
    """What the search service needs of an index: the in-memory `VectorIndex`, or
    `search.pgindex.PgVectorIndex` (the k-nearest query inside PostgreSQL).

    Vectors are in the model's index space (post-processed, not necessarily unit length).
    The write methods are called after the database commit; an index that reads the database
    itself (pgvector) treats them as no-ops.
    """

    @property
    def dim(self) -> int: ...

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


class VectorIndex:
    """Normalised image vectors with per-row product facts; top-k distinct products by cosine.

    Storage, all of length ``capacity`` and valid in ``[:used]``:
      vectors     (capacity, dim) float32, unit rows (zero rows allowed)
      norms       (capacity,) float32  each row's length before normalising (other metrics)
      image_id    (capacity,) int64
      product_id  (capacity,) int64
      live        (capacity,) bool     False once the image is removed (row awaiting compaction)
      active      (capacity,) bool     cached ProductFacts.active of the row's product
      price       (capacity,) float64  cached ProductFacts.price
      category    (capacity,) int32    cached category code, -1 for None
    The caches duplicate the product's facts on each of its rows so that a query builds its
    filter mask with a few vectorised comparisons instead of a Python loop over products.
    """

    def __init__(self, dim: int = 512, *, ann_min_rows: int | None = ANN_MIN_ROWS) -> None:
        """`ann_min_rows`: live rows from which an approximate index serves queries (None:
        always exact)."""
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self._dim = dim
        self._ann_min_rows = ann_min_rows
        self._ann: IvfAnn | None = None
        self._ann_build: AnnBuild | None = None
        self._ann_generation = 0  # bumped when rows are renumbered (compaction)
        self._ann_dirty: set[int] = set()  # rows written while a build is running
        self._ann_failed = False
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
        norms = np.zeros(capacity, dtype=np.float32)
        image_id = np.zeros(capacity, dtype=np.int64)
        product_id = np.zeros(capacity, dtype=np.int64)
        live = np.zeros(capacity, dtype=bool)
        active = np.zeros(capacity, dtype=bool)
        price = np.zeros(capacity, dtype=np.float64)
        category = np.full(capacity, _NO_CATEGORY, dtype=np.int32)
        if old is not None and n:
            vectors[:n] = self._vectors[:n]
            norms[:n] = self._norms[:n]
            image_id[:n] = self._image_id[:n]
            product_id[:n] = self._product_id[:n]
            live[:n] = self._live[:n]
            active[:n] = self._active[:n]
            price[:n] = self._price[:n]
            category[:n] = self._category[:n]
        self._vectors: FloatRows = vectors
        self._norms: FloatRows = norms
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
        norms = np.zeros(capacity, dtype=np.float32)
        norms[:n] = self._norms[keep]
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
        self._norms = norms
        self._live, self._active, self._price, self._category = live, active, price, category
        self._used, self._dead = n, 0
        # Rows were renumbered: the approximate index is rebuilt from scratch.
        self._ann = None
        self._ann_generation += 1
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

    def image_ids_of(self, product_id: int) -> list[int]:
        """The image ids the index holds for a product (empty if none or unknown)."""
        with self._lock:
            return sorted(
                int(self._image_id[row]) for row in self._rows_of_product.get(product_id, ())
            )

    def product_vectors(self, product_id: int) -> FloatRows:
        """(m, dim) copy of the vectors of a product's images as given, by image id.

        m is 0 for a known product without images; an unknown product raises KeyError.
        """
        with self._lock:
            if product_id not in self._facts:
                raise KeyError(f"unknown product {product_id}")
            rows = self._product_rows(product_id)  # (m,)
            rows = rows[np.argsort(self._image_id[rows], kind="stable")]
            given: FloatRows = self._vectors[rows] * self._norms[rows, None]  # (m, dim)
            return given

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
        """The k products closest to `query` ((dim,) floats), one hit each (its best image).

        Ascending distance in `metric`, ties broken by product id (then image id). Returns
        fewer than k hits when fewer products pass the filters; a zero query is at cosine
        distance 1.0 from all.
        """
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if max_price is not None and math.isnan(max_price):
            raise ValueError("max_price must not be NaN")
        q = np.asarray(query)
        if q.ndim != 1 or q.shape[0] != self._dim:
            raise ValueError(f"query: expected shape ({self._dim},), got {q.shape}")
        q_unit, q_norm = _normalised_query(q, self._dim)  # (dim,) float32, its length
        if k == 0:
            return []

        with self._lock:
            n = self._used
            code: np.int32 | None = None
            if category is not None:
                code = self._category_codes.get(category)
                if code is None:
                    return []  # no product ever had that category
            excluded = [pid for pid in exclude_product_ids if self._rows_of_product.get(pid)]

            def passes(rows: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
                """(m,) bool: which of these rows pass the filters (dead rows never do)."""
                ok = self._live[rows]
                if not include_inactive:
                    ok &= self._active[rows]
                if code is not None:
                    ok &= self._category[rows] == code
                if max_price is not None:
                    ok &= self._price[rows] <= max_price
                if excluded:
                    ok &= ~np.isin(self._product_id[rows], excluded)
                return ok

            # The ANN ranks by cosine; other metrics scan exactly.
            ann = (
                self._ann_ready() if self._ann_min_rows is not None and metric == "cosine" else None
            )
            found = self._search_ann(ann, q_unit, k, passes) if ann is not None else None
            if found is not None:
                cand_scores, cand_products, cand_images, cand_norms = found
            else:
                # The filter mask over used rows, (n,) bool: dead rows never pass.
                mask = self._live[:n].copy()
                if not include_inactive:
                    mask &= self._active[:n]
                if code is not None:
                    mask &= self._category[:n] == code
                if max_price is not None:
                    mask &= self._price[:n] <= max_price
                for pid in excluded:
                    mask[list(self._rows_of_product[pid])] = False
                # One matrix-vector product: cosine similarity of every used row, (n,) float32.
                scores = self._vectors[:n] @ q_unit
                if mask.all():  # the usual case: no row filtered out, no fancy indexing
                    cand_scores = scores
                    cand_products = self._product_id[:n].copy()  # copied out of the lock
                    cand_images = self._image_id[:n].copy()
                    cand_norms = self._norms[:n].copy()
                else:
                    cand = np.flatnonzero(mask)  # (c,) rows that pass the filters
                    if cand.size == 0:
                        return []
                    cand_scores = scores[cand]  # (c,)
                    cand_products = self._product_id[cand]  # (c,) int64
                    cand_images = self._image_id[cand]
                    cand_norms = self._norms[cand]

        # From here on only local arrays are used, so the lock is no longer needed.
        # distance = 1 - score, in float32; max(0, .) so rounding never gives a negative distance.
        cand_dist = _distances(cand_scores, cand_norms, q_norm, metric)  # (c,) float32
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
        # (n, dim) float32 unit rows, validated; (n,) their lengths
        unit, lengths = _normalised_with_norms(vectors, self._dim, "vectors")
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
            self._norms[rows] = lengths
            self._write_row_facts(rows, facts)
            if self._ann is not None:
                fresh = set(new)
                replaced = rows[[i for i in range(len(ids)) if i not in fresh]]
                self._ann.remove(replaced)
                self._ann.add(rows, unit)
            elif self._ann_build is not None:
                self._ann_dirty.update(rows.tolist())

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
        ann_min_rows: int | None = ANN_MIN_ROWS,
    ) -> VectorIndex:
        """Bulk load at start: (n,) image ids, (n,) product ids, (n, dim) vectors; dim from them.

        Every product id must appear in `facts` (later facts for the same product win);
        ValueError on repeated image ids, unknown products, mismatched lengths or NaN/inf.
        """
        array = np.asarray(vectors)
        if array.ndim != 2:
            raise ValueError(f"vectors: expected shape (n, dim), got {array.shape}")
        index = cls(dim=int(array.shape[1]), ann_min_rows=ann_min_rows)
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
        unit, lengths = _normalised_with_norms(array, index._dim, "vectors")  # (n, dim), (n,)
        index._ensure_capacity(n)
        index._vectors[:n] = unit
        index._norms[:n] = lengths
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
        with index._lock:
            index._ann_ready()  # a large catalogue starts building its ANN in the background
        return index

    # ------------------------------------------------------------------ approximate index

    def _ann_ready(self) -> IvfAnn | None:
        """The ANN if it can serve queries; installs a finished build, starts one when due.
        Call with the lock held."""
        build = self._ann_build
        if build is not None and build.done.is_set():
            self._ann_build = None
            dirty, self._ann_dirty = self._ann_dirty, set()
            if build.error is not None:
                self._ann_failed = True
                log.warning("approximate index unavailable, searching exactly: %s", build.error)
            elif build.result is not None and build.generation == self._ann_generation:
                ann = build.result
                if dirty:  # rows changed since the snapshot: their current vectors go in
                    rows = np.array(sorted(dirty), dtype=np.int64)
                    ann.remove(rows[rows < build.rows.size])
                    ann.add(rows, self._vectors[rows])
                self._ann = ann
                log.info("approximate index ready: %d rows, %d lists", len(ann), ann.nlist)
        live = self._used - self._dead
        if (
            self._ann is None
            and self._ann_build is None
            and not self._ann_failed
            and self._ann_min_rows is not None
            and live >= self._ann_min_rows
        ):
            n = self._used
            self._ann_dirty = set()
            self._ann_build = AnnBuild(
                self._vectors[:n], np.arange(n, dtype=np.int64), self._ann_generation
            )
        return self._ann

    def wait_for_ann(self, timeout: float | None = None) -> bool:
        """Start the approximate index if due, wait for it; True once it serves queries."""
        with self._lock:
            self._ann_ready()
            build = self._ann_build
        if build is not None:
            build.done.wait(timeout)
        with self._lock:
            return self._ann_ready() is not None

    def ann_info(self) -> dict[str, int | bool]:
        """State of the approximate index, for logs and benchmarks."""
        with self._lock:
            ann = self._ann
            return {
                "ready": ann is not None,
                "building": self._ann_build is not None,
                "rows": len(ann) if ann is not None else 0,
                "nlist": ann.nlist if ann is not None else 0,
                "nprobe": ann.nprobe if ann is not None else 0,
                "bytes": ann.nbytes if ann is not None else 0,
            }

    def _search_ann(
        self,
        ann: IvfAnn,
        q_unit: FloatRows,
        k: int,
        passes: Callable[[npt.NDArray[np.intp]], npt.NDArray[np.bool_]],
    ) -> tuple[FloatRows, npt.NDArray[np.int64], npt.NDArray[np.int64], FloatRows] | None:
        """(scores, products, images, norms) of the ANN's candidate rows that pass the filters; None
        when they hold fewer than k products and the exact scan must answer instead.

        Asks for `want` = max(64, 8k) candidates; when a filter lets only a fraction through,
        asks again for proportionally more (up to 4096), so the re-ranking still sees about
        `want` rows that pass.
        """
        want = max(_ANN_CANDIDATES, 8 * k)
        count = want
        while True:
            rows = ann.search(q_unit, count)  # (m,) candidate rows, best first
            rows = rows[rows < self._used].astype(np.intp)
            sel = rows[passes(rows)]  # (c,)
            exhausted = rows.size < count  # the probed lists hold no more rows
            if sel.size >= want or exhausted or count >= _ANN_MAX_CANDIDATES:
                break
            share = max(sel.size / max(rows.size, 1), 1 / 64)
            count = min(_ANN_MAX_CANDIDATES, max(2 * count, int(want / share)))
        products = self._product_id[sel]
        if np.unique(products).size < k:
            return None
        return self._vectors[sel] @ q_unit, products, self._image_id[sel], self._norms[sel]


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
