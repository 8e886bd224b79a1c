"""`VectorIndex`: the in-memory cosine index over product image vectors (numpy only).

Every product image has one VGG16 avg-pool vector (512 float32). The index keeps them
L2-normalised in one preallocated float32 matrix (`search.index.rows.VectorRows`), so a query is
a single matrix-vector product (cosine similarity = dot product of unit vectors) followed by a
filter mask and a top-k over distinct products. It is loaded once at start (`VectorIndex.build`)
and then changed in place when the catalogue changes; nothing is re-fitted per query.

Large catalogues (`ann_min_rows` rows and more, 8192 by default) also get an approximate index
(`search.index.ivf.IvfAnn`, faiss IVF with 8-bit codes), built in a background thread from a
snapshot and then kept up to date with every change. A query then takes the ANN's few hundred
candidate rows, applies the same filters and re-ranks them exactly with the float32 rows; when they
hold fewer than k products that pass the filters (a narrow filter), it scans every row exactly, as
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
import threading
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt

from search.index.colour_memo import ColourMemo
from search.index.distance import (
    distances,
    normalised_query,
    normalised_with_norms,
    top_k_products,
)
from search.index.ivf import AnnBuild, IvfAnn
from search.index.protocol import (
    NO_FILTER,
    FloatRows,
    Hit,
    Metric,
    ProductFacts,
    SearchFilter,
    check_facts,
)
from search.index.rows import VectorRows

__all__ = ["ANN_MIN_ROWS", "VectorIndex"]

ANN_MIN_ROWS = 8192  # live rows from which the approximate index is built and used
_ANN_CANDIDATES = 64  # candidate rows asked of the ANN per query (at least 8k)
_ANN_MAX_CANDIDATES = 4096  # beyond this a filtered query scans exactly instead

log = logging.getLogger(__name__)


class VectorIndex(VectorRows):
    """Normalised image vectors with per-row product facts; top-k distinct products by cosine.

    The rows and their fact caches are `VectorRows`'s (see there for the arrays and shapes);
    this class adds the lock, the filters, exact and approximate search, and the writes.
    """

    reads_database = False

    def __init__(self, dim: int = 512, *, ann_min_rows: int | None = ANN_MIN_ROWS) -> None:
        """`ann_min_rows`: live rows from which an approximate index serves queries (None:
        always exact)."""
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self._ann_min_rows = ann_min_rows
        self._ann: IvfAnn | None = None
        self._ann_build: AnnBuild | None = None
        self._ann_generation = 0  # bumped when rows are renumbered (compaction)
        self._ann_dirty: set[int] = set()  # rows written while a build is running
        self._ann_failed = False
        self._lock = threading.RLock()
        self.colour_memo: ColourMemo | None = ColourMemo()
        super().__init__(dim)

    def _compact(self) -> None:
        """Drop dead rows (`VectorRows._compact`); the renumbered rows void the ANN."""
        super()._compact()
        # Rows were renumbered: the approximate index is rebuilt from scratch.
        self._ann = None
        self._ann_generation += 1

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

    def categories_of(self, product_ids: Iterable[int]) -> dict[int, str | None]:
        with self._lock:
            return {p: self._facts[p].category for p in product_ids if p in self._facts}

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
        query_filter: SearchFilter = NO_FILTER,
        metric: Metric = "cosine",
    ) -> list[Hit]:
        """The k products closest to `query` ((dim,) floats), one hit each (its best image).

        Ascending distance in `metric`, ties broken by product id (then image id). Returns
        fewer than k hits when fewer products pass the filters; a zero query is at cosine
        distance 1.0 from all.
        """
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        category, max_price = query_filter.category, query_filter.max_price
        include_inactive = query_filter.include_inactive
        q = np.asarray(query)
        if q.ndim != 1 or q.shape[0] != self._dim:
            raise ValueError(f"query: expected shape ({self._dim},), got {q.shape}")
        q_unit, q_norm = normalised_query(q, self._dim)  # (dim,) float32, its length
        if k == 0:
            return []

        with self._lock:
            n = self._used
            code: np.int32 | None = None
            if category is not None:
                code = self._category_codes.get(category)
                if code is None:
                    return []  # no product ever had that category
            excluded = [
                pid for pid in query_filter.exclude_product_ids if self._rows_of_product.get(pid)
            ]

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
        cand_dist = distances(cand_scores, cand_norms, q_norm, metric)  # (c,) float32
        return top_k_products(cand_dist, cand_scores, cand_products, cand_images, k)

    # ------------------------------------------------------------------ writing

    def upsert_product(self, facts: ProductFacts) -> None:
        """Add a product, or change its category/price/active flag (its rows follow at once)."""
        check_facts(facts)
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
        unit, lengths = normalised_with_norms(vectors, self._dim, "vectors")
        if unit.shape[0] != len(ids):
            raise ValueError(f"{len(ids)} image ids but {unit.shape[0]} vectors")
        if len(set(ids)) != len(ids):
            raise ValueError("image ids repeat within one call")
        with self._lock:
            facts = self._facts.get(product_id)
            if facts is None:
                raise ValueError(f"product {product_id} must be upserted before its vectors")
            if self.colour_memo is not None:
                self.colour_memo.forget(ids)
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
            if self.colour_memo is not None:
                self.colour_memo.forget([image_id])
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
        index._load_rows(image_ids, product_ids, array)
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
