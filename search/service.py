"""The search service: ties the extractor, the index and the catalogue together.

Every catalogue change is atomic across the image file, the database row and the index: the
file is written first (content-addressed), then one transaction commits the product, image and
vector (and a `catalog_changes` row), and only then is the index changed. A failure before the
commit deletes the new file; a crash leaves at most an unreferenced file, swept at the next
start (`sweep_orphan_files`). Other processes (bot instances, the command line) apply the
change to their own in-memory index from `catalog_changes` (`sync_index`, every few seconds).

Vectors: the active model (table search_models, one row active) gives a raw (dim,) vector per
image; its post-processing (by default signed square root, L2-normalise, subtract the
catalogue mean; fitted on the catalogue and stored with the model) turns it into the index
vector that searches compare. Queries go through the same transform. The index is either the
in-memory `VectorIndex` or, on PostgreSQL, `PgVectorIndex` (the k-nearest query in SQL).
"""

from __future__ import annotations

import hashlib
import logging
import math
import statistics
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db import repository as repo
from db.engine import create_db_engine, create_session_factory
from db.media import MediaStore
from db.migrate import ensure_up_to_date
from db.models import Product, SearchModel
from db.records import ImageRecord, ProductRecord
from search.backbones import BackboneSpec, get_backbone
from search.featurizer import Featurizer
from search.fields import ProductFields
from search.index import Hit, ProductFacts, SearchIndex, VectorIndex
from search.postprocess import METRICS, Metric, PostProcessor, expand_query
from search.preprocess import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    InvalidImageError,
    inspect_image,
    load_rgb,
    to_model_input,
)

log = logging.getLogger(__name__)

# The post-processing's catalogue mean is fitted once there are this many vectors, and again
# whenever the catalogue has doubled since (at start and after an import): a mean of a handful
# of photos would centre on those photos.
MIN_FIT_VECTORS = 16
# A category is inferred when more than half of the nearest products share it.
CATEGORY_MAJORITY = 0.5

PostprocessKind = str  # "sqrt-centre" | "none"


@dataclass(frozen=True, slots=True)
class ActiveModel:
    """The model searches use: its stored name, backbone and fitted post-processing."""

    name: str  # e.g. "vgg16_avgpool", what embeddings.model_name holds
    backbone: BackboneSpec
    post: PostProcessor

    @property
    def dim(self) -> int:
        return self.backbone.dim


class CatalogError(ValueError):
    """A catalogue request that cannot be done (unknown SKU, duplicate image...); one line."""


@dataclass(frozen=True, slots=True)
class ResultItem:
    rank: int  # 1-based
    product: ProductRecord
    image: ImageRecord  # the product's image that matched best
    distance: float  # in the search's metric, smaller is closer
    similarity: float  # cosine similarity in percent (what customers see)


@dataclass(frozen=True, slots=True)
class SearchResult:
    items: list[ResultItem]
    search_id: int | None  # the search log row, for shared result links
    latency_ms: float
    filters: dict[str, Any] = field(default_factory=dict)
    share_token: str | None = None  # what a shared link to these results carries
    inferred_category: str | None = None  # set when the category filter was guessed
    model_name: str = ""
    metric: str = "cosine"

    @property
    def best_distance(self) -> float | None:
        """Cosine distance of the best match (whatever the metric ranked by)."""
        return 1.0 - self.items[0].similarity / 100.0 if self.items else None


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """An image checked and turned into model input, not yet featurised."""

    data: bytes
    content_hash: str  # sha256 hex of the bytes
    image_format: str
    width: int
    height: int
    model_input: np.ndarray  # (h, w, 3) float32 in the backbone's input size and preprocessing
    backbone: str = "vgg16"  # the backbone `model_input` was made for


@dataclass(frozen=True, slots=True)
class CatalogStats:
    products_total: int
    products_active: int
    searches_today: int
    searches_week: int
    median_latency_ms: float | None  # over the last 7 days
    thumbs_up: int
    thumbs_down: int
    weak_share: float | None  # share of 7-day searches whose best match was weak


@dataclass(frozen=True, slots=True)
class AddOutcome:
    product: ProductRecord
    image: ImageRecord
    created_product: bool
    created_image: bool  # False when these exact bytes were already this product's image
    near_duplicates: list[ResultItem]  # other products that look (almost) the same


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def facts_of(product: Product | ProductRecord) -> ProductFacts:
    return ProductFacts(
        product_id=product.id,
        category=product.category,
        # NaN never passes a `price <= max_price` filter: unpriced products are not "under 60".
        price=float(product.price) if product.price is not None else math.nan,
        active=product.in_stock and not product.removed,
    )


def postprocess_matches(post: PostProcessor, kind: PostprocessKind) -> bool:
    if kind == "none":
        return post.is_identity
    return post.power == 0.5 and post.normalize and post.projection is None


class SearchService:
    """Search and catalogue operations. Thread-safe: catalogue writes are serialised."""

    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        media: MediaStore,
        featurizer_provider: Callable[[str], Featurizer],
        model_name: str | None = None,
        top_k: int = 8,
        near_duplicate_distance: float = 0.12,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
        max_image_bytes: int = DEFAULT_MAX_BYTES,
        metric: Metric = "cosine",
        postprocess: PostprocessKind = "sqrt-centre",
        vector_search: str = "memory",
        hnsw_ef_search: int = 100,
        infer_category: bool = False,
        query_expansion: int = 0,
    ) -> None:
        """`featurizer_provider(backbone_name)` loads the model of a backbone. `model_name` is
        only a fallback: the database says which model is active. `vector_search`: "memory"
        or "pgvector" (PostgreSQL only)."""
        self._session_factory = session_factory
        self.media = media
        self._featurizer_provider = featurizer_provider
        self._featurizer: Featurizer | None = None
        self._featurizer_backbone: str | None = None
        self._featurizer_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._fallback_model_name = model_name or "vgg16_avgpool"
        self.top_k = top_k
        self.near_duplicate_distance = near_duplicate_distance
        self.max_image_pixels = max_image_pixels
        self.max_image_bytes = max_image_bytes
        self.metric: Metric = metric
        self.postprocess_kind = postprocess
        self.vector_search = vector_search
        self.hnsw_ef_search = hnsw_ef_search
        self.infer_category = infer_category
        self.query_expansion = query_expansion
        vgg16 = get_backbone("vgg16")
        self.model = ActiveModel(name=vgg16.model_name, backbone=vgg16, post=PostProcessor())
        self.index: SearchIndex = VectorIndex(vgg16.dim)
        self._last_change = 0  # the last catalog_changes row this process's index reflects
        self._engine: Engine | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        *,
        database_url: str,
        media: MediaStore,
        featurizer_provider: Callable[[str], Featurizer],
        model_name: str | None = None,
        engine: Engine | None = None,
        **options: Any,
    ) -> SearchService:
        """Bring the database up to date, then load the index from it."""
        engine = engine or create_db_engine(database_url)
        ensure_up_to_date(engine)
        service = cls(
            session_factory=create_session_factory(engine),
            media=media,
            featurizer_provider=featurizer_provider,
            model_name=model_name,
            **options,
        )
        service._engine = engine
        service.reload_index()
        return service

    def close(self) -> None:
        """Release database connections (SQLite checkpoints its WAL)."""
        if self._engine is not None:
            self._engine.dispose()

    def session(self) -> Session:
        return self._session_factory()

    @property
    def write_lock(self) -> threading.RLock:
        """Held while the catalogue is changed; reindexing holds it for its switch-over."""
        return self._write_lock

    @property
    def model_name(self) -> str:
        return self.model.name

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def featurizer(self) -> Featurizer:
        """The active backbone's model, loaded on first use (commands that do not featurise
        never load it), and again when another backbone becomes active."""
        return self.featurizer_for(self.model.backbone)

    def featurizer_for(self, backbone: BackboneSpec) -> Featurizer:
        with self._featurizer_lock:
            if self._featurizer is None or self._featurizer_backbone != backbone.name:
                featurizer = self._featurizer_provider(backbone.name)
                if featurizer.dim != backbone.dim:
                    raise RuntimeError(
                        f"the {backbone.name} model gives {featurizer.dim} values per image, "
                        f"expected {backbone.dim}"
                    )
                self._featurizer, self._featurizer_backbone = featurizer, backbone.name
            return self._featurizer

    def warm_up(self) -> None:
        """Load the model and run it once, so the first customer does not wait for that."""
        height, width = self.model.backbone.input_size
        self.featurizer.embed(np.zeros((1, height, width, 3), dtype=np.float32))

    # ---- the active model and its post-processing --------------------------------------------

    def fit_postprocess(self, session: Session, row: SearchModel) -> PostProcessor:
        """Fit the post-processing on the model's raw vectors, rewrite every index vector
        and store the fit, in the caller's transaction."""
        ids, raw = repo.raw_vectors(session, model_name=row.name, dim=row.dim)  # (n,), (n, dim)
        if self.postprocess_kind == "none":
            post = PostProcessor()
        elif ids.size >= MIN_FIT_VECTORS:
            post = PostProcessor.fit(raw, power=0.5, centre=True)
        else:  # too few photos for a meaningful mean: square root and normalisation only
            post = PostProcessor(power=0.5, normalize=True, dim=row.dim)
        repo.set_index_vectors(session, embedding_ids=ids.tolist(), vectors=post.transform(raw))
        row.postprocess = post.to_json()
        repo.log_change(session, product_id=None)
        log.info(
            "post-processing of %s fitted on %d vectors (%s)",
            row.name,
            ids.size,
            self.postprocess_kind,
        )
        return post

    def _prepare_active_model(self, *, refit: bool = False) -> ActiveModel:
        """The active model with its post-processing fitted and every index vector computed
        (a new database, one migrated from before 0003, a changed POSTPROCESS setting, or a
        catalogue that has doubled since the last fit)."""
        with self._write_lock, self.session() as session:
            row = repo.active_model(session)
            if row is None:
                raise CatalogError("no active model in the database; run `lookalike db upgrade`")
            spec = get_backbone(row.backbone)
            post = PostProcessor.from_json(row.postprocess) if row.postprocess else None
            count = repo.count_embeddings(session, model_name=row.name)
            if refit or self._refit_due(post, count):
                post = self.fit_postprocess(session, row)
                session.commit()
            else:
                assert post is not None
                ids, raw = repo.raw_vectors(
                    session, model_name=row.name, dim=row.dim, missing_index_only=True
                )
                if ids.size:  # rows stored by a process that died before writing them
                    repo.set_index_vectors(
                        session, embedding_ids=ids.tolist(), vectors=post.transform(raw)
                    )
                    session.commit()
            return ActiveModel(name=row.name, backbone=spec, post=post)

    def refit_postprocess_if_due(self) -> bool:
        """Fit again when the catalogue has doubled since the last fit (see MIN_FIT_VECTORS)."""
        with self.session() as session:
            count = repo.count_embeddings(session, model_name=self.model.name)
        if not self._refit_due(self.model.post, count):
            return False
        self.reload_index(refit=True)
        return True

    def _refit_due(self, post: PostProcessor | None, count: int) -> bool:
        """Whether the stored fit must be replaced: none yet, another kind than the setting
        asks for, or fitted on less than half of the `count` vectors there are now."""
        if post is None or not postprocess_matches(post, self.postprocess_kind):
            return True
        return (
            self.postprocess_kind != "none"
            and count >= MIN_FIT_VECTORS
            and count >= 2 * max(post.fitted_on, MIN_FIT_VECTORS // 2)
        )

    def refit_postprocess(self) -> None:
        """Fit the post-processing again on the whole catalogue (after an import), and reload."""
        self.reload_index(refit=True)

    def to_index_space(self, vector: np.ndarray) -> np.ndarray:
        """A raw (dim,) model vector -> the (dim,) float32 vector the index compares."""
        return self.model.post.transform(vector)

    # ---- the index -------------------------------------------------------------------------

    def reload_index(self, *, refit: bool = False) -> None:
        """Rebuild the index from the database (at start, after another process switched the
        model or fitted the post-processing again)."""
        started = time.perf_counter()
        with self.session() as session:
            last_change = repo.last_change_id(session)  # read first: later changes re-apply
        model = self._prepare_active_model(refit=refit)
        index: SearchIndex
        if self.vector_search == "pgvector":
            from search.pgindex import PgVectorIndex  # psycopg/pgvector only when used

            index = PgVectorIndex(
                self._session_factory,
                model_name=model.name,
                dim=model.dim,
                ef_search=self.hnsw_ef_search,
            )
        else:
            with self.session() as session:
                products = session.query(Product).all()
                facts = [facts_of(product) for product in products]
                image_ids, product_ids, vectors = repo.load_index_vectors(
                    session, model_name=model.name
                )
            index = VectorIndex.build(
                facts=facts,
                image_ids=image_ids,
                product_ids=product_ids,
                vectors=np.stack(vectors) if vectors else np.zeros((0, model.dim), np.float32),
            )
        with self._write_lock:
            self.index, self.model = index, model
            self._last_change = max(self._last_change, last_change)
        log.info(
            "index loaded (%s, %s): %d vectors of %d products in %.0f ms",
            model.name,
            type(index).__name__,
            len(index),
            index.product_count(active_only=False),
            (time.perf_counter() - started) * 1000,
        )

    def sync_index(self) -> int:
        """Apply catalogue changes committed by other processes since the last call (or this
        process's own: re-applying one is harmless). Returns how many changes were read."""
        with self.session() as session:
            changes = repo.changes_since(session, after_id=self._last_change)
        if not changes:
            return 0
        if any(product_id is None for _, product_id in changes):
            self.reload_index()
        elif isinstance(self.index, VectorIndex):
            for product_id in sorted({pid for _, pid in changes if pid is not None}):
                self._refresh_product(product_id)
        with self._write_lock:
            self._last_change = max(self._last_change, changes[-1][0])
        return len(changes)

    def _refresh_product(self, product_id: int) -> None:
        """Make the in-memory index hold exactly what the database holds for one product."""
        with self._write_lock:
            index = self.index
            if not isinstance(index, VectorIndex):
                return
            with self.session() as session:
                row = repo.get_product_by_id(session, product_id=product_id)
                if row is None:
                    return
                facts = facts_of(row)
                image_ids, _, vectors = repo.load_index_vectors(
                    session, model_name=self.model.name, product_id=product_id
                )
            index.upsert_product(facts)
            stored = set(image_ids.tolist())
            for image_id in index.image_ids_of(product_id):
                if image_id not in stored:
                    index.remove_image(image_id)
            if vectors:
                index.add_vectors(
                    product_id=product_id, image_ids=image_ids.tolist(), vectors=np.stack(vectors)
                )

    def sweep_orphan_files(self) -> list[str]:
        """Delete image files no row references. Call only when no other writer is running."""
        with self._write_lock, self.session() as session:
            return self.media.sweep_orphans(repo.referenced_files(session))

    # ---- images -> vectors -----------------------------------------------------------------

    def prepare(self, data: bytes, *, backbone: BackboneSpec | None = None) -> PreparedImage:
        """Check and preprocess one image for the active backbone (or `backbone`). Raises
        InvalidImageError with a one-line reason."""
        info = inspect_image(data, max_pixels=self.max_image_pixels, max_bytes=self.max_image_bytes)
        image = load_rgb(data, max_pixels=self.max_image_pixels, max_bytes=self.max_image_bytes)
        spec = backbone or self.model.backbone
        return PreparedImage(
            data=data,
            content_hash=content_hash(data),
            image_format=info.format,
            width=image.width,
            height=image.height,
            model_input=to_model_input(
                image, size=spec.input_size, preprocessing=spec.preprocessing
            ),
            backbone=spec.name,
        )

    def embed(
        self, prepared: Sequence[PreparedImage], *, backbone: BackboneSpec | None = None
    ) -> np.ndarray:
        """Featurise prepared images in one batch with the active backbone (or `backbone`):
        (n, dim) float32, every value finite."""
        spec = backbone or self.model.backbone
        if not prepared:
            return np.zeros((0, spec.dim), dtype=np.float32)
        inputs = [
            item.model_input if item.backbone == spec.name else self._model_input(item, spec)
            for item in prepared
        ]
        batch = np.stack(inputs)  # (n, h, w, 3)
        vectors = self.featurizer_for(spec).embed(batch)  # (n, dim)
        if not np.isfinite(vectors).all():
            raise InvalidImageError("the image could not be analysed (non-finite features)")
        return vectors

    # ---- search ----------------------------------------------------------------------------

    def search_image(
        self,
        data: bytes,
        *,
        k: int | None = None,
        category: str | None = None,
        max_price: Decimal | float | None = None,
        include_inactive: bool = False,
        user_ref: str = "cli",
        source: str = "cli",
        metric: Metric | None = None,
        infer_category: bool | None = None,
    ) -> SearchResult:
        """Photo bytes -> the k most similar products. Raises InvalidImageError."""
        started = time.perf_counter()
        prepared = self.prepare(data)
        vector = self.embed([prepared])[0]
        return self.search_vector(
            vector,
            k=k,
            category=category,
            max_price=max_price,
            include_inactive=include_inactive,
            started=started,
            user_ref=user_ref,
            source=source,
            query_hash=prepared.content_hash,
            metric=metric,
            infer_category=infer_category,
        )

    def search_vector(
        self,
        vector: np.ndarray,
        *,
        k: int | None = None,
        category: str | None = None,
        max_price: Decimal | float | None = None,
        include_inactive: bool = False,
        exclude_product_ids: Iterable[int] = (),
        started: float | None = None,
        user_ref: str = "cli",
        source: str = "cli",
        query_hash: str | None = None,
        extra_filters: dict[str, Any] | None = None,
        metric: Metric | None = None,
        infer_category: bool | None = None,
    ) -> SearchResult:
        """A raw (dim,) model vector -> ranked products, logged to the search log.

        With `infer_category` (default: the service's setting) and no `category`, the category
        more than half of the nearest products share becomes the filter (said in the result).
        """
        started = time.perf_counter() if started is None else started
        k = self.top_k if k is None else k
        metric = metric or self.metric
        model = self.model
        index = self.index
        query = model.post.transform(np.asarray(vector, dtype=np.float32))  # (dim,) index space
        price_limit = float(max_price) if max_price is not None else None
        excluded = frozenset(exclude_product_ids)

        def run(with_category: str | None) -> list[Hit]:
            def nearest(q: np.ndarray, count: int) -> list[Hit]:
                return index.search(
                    q,
                    k=count,
                    category=with_category,
                    max_price=price_limit,
                    include_inactive=include_inactive,
                    exclude_product_ids=excluded,
                    metric=metric,
                )

            if not self.query_expansion:
                return nearest(query, k)
            # Average query expansion (docs/evaluation.md: precision@8 0.853 -> 0.872 on top of
            # sqrt+centre): the query and its nearest products averaged, then searched again.
            # Not for a photo of a catalogue product itself (its best match is a near
            # duplicate): the query already sits on the catalogue.
            first = nearest(query, self.query_expansion)
            if not first or 1.0 - first[0].similarity / 100.0 <= self.near_duplicate_distance:
                return nearest(query, k)
            neighbours = np.stack(
                [index.product_vectors(hit.product_id).mean(axis=0) for hit in first]
            )  # (m, dim) index space
            expanded = expand_query(query, neighbours, metric=metric).astype(np.float32)
            return nearest(expanded, k)

        hits = run(category)
        inferred: str | None = None
        infer = self.infer_category if infer_category is None else infer_category
        if infer and category is None and hits:
            inferred = self._majority_category(hits, k)
            if inferred is not None:
                hits = run(inferred)
        filters: dict[str, Any] = {
            "k": k,
            "category": category or inferred,
            "max_price": str(max_price) if max_price is not None else None,
            **({"category_inferred": True} if inferred else {}),
            **(extra_filters or {}),
        }
        with self.session() as session:
            items = _result_items(session, hits)
            latency_ms = (time.perf_counter() - started) * 1000
            entry = repo.log_search(
                session,
                user_ref=user_ref,
                source=source,
                query_hash=query_hash,
                model_name=model.name,
                filters=filters,
                results=[
                    {
                        "product_id": i.product.id,
                        "image_id": i.image.id,
                        "distance": i.distance,
                        "similarity": i.similarity,
                    }
                    for i in items
                ],
                latency_ms=latency_ms,
                query_vector=vector,
                metric=metric,
            )
            session.commit()
            search_id, share_token = entry.id, entry.share_token
        return SearchResult(
            items=items,
            search_id=search_id,
            latency_ms=latency_ms,
            filters=filters,
            share_token=share_token,
            inferred_category=inferred,
            model_name=model.name,
            metric=metric,
        )

    def _majority_category(self, hits: Sequence[Hit], k: int) -> str | None:
        """The category shared by more than half of the k asked for (not of the hits found:
        3 products of which 2 are boots say little), or None."""
        with self.session() as session:
            rows = session.execute(
                select(Product.id, Product.category).where(
                    Product.id.in_([hit.product_id for hit in hits])
                )
            ).all()
        categories = Counter(category for _, category in rows if category)
        if not categories:
            return None
        category, count = categories.most_common(1)[0]
        return category if count > CATEGORY_MAJORITY * k else None

    def similar_to_product(
        self, product_id: int, *, k: int | None = None, user_ref: str = "cli", source: str = "cli"
    ) -> tuple[ProductRecord, SearchResult]:
        """A product and its lookalikes, from its stored vectors (nothing is featurised)."""
        product = self.get_product_by_id(product_id)
        if product is None:
            raise CatalogError(f"there is no product {product_id}")
        with self.session() as session:
            raw = repo.image_vectors(session, product_id=product_id, model_name=self.model_name)
        if not raw:
            raise CatalogError(f"product {product.sku} has no searchable image yet")
        # The mean of its images' raw vectors, (dim,): it goes through the post-processing
        # like a photo would, and is what "cheaper" re-runs from the search log.
        query = np.mean(np.stack(raw), axis=0).astype(np.float32)
        result = self.search_vector(
            query,
            k=k,
            exclude_product_ids=[product_id],
            user_ref=user_ref,
            source=source,
            extra_filters={"similar_to": product_id},
            infer_category=False,  # "more like this" shows what looks alike, whatever it is
        )
        return product, result

    def get_search(
        self, search_id: int | None = None, *, share_token: str | None = None
    ) -> SearchResult | None:
        """A logged search (by id, or by its shared link's token), with today's product
        data; products no longer shown are left out."""
        with self.session() as session:
            record = repo.get_search(session, search_id=search_id, share_token=share_token)
            if record is None:
                return None
            ids = [int(str(entry["product_id"])) for entry in record.results]
            products = repo.get_product_records(session, product_ids=ids)
        items: list[ResultItem] = []
        for entry in record.results:
            product = products.get(int(str(entry["product_id"])))
            if product is None or not product.active:
                continue
            image = _image_of(product, int(str(entry["image_id"])))
            if image is None:
                continue
            distance = float(str(entry["distance"]))
            similarity = entry.get("similarity")  # logged since several metrics exist
            items.append(
                ResultItem(
                    rank=len(items) + 1,
                    product=product,
                    image=image,
                    distance=distance,
                    similarity=float(str(similarity))
                    if similarity is not None
                    else 100.0 * min(1.0, max(0.0, 1.0 - distance)),
                )
            )
        return SearchResult(
            items=items,
            search_id=record.id,
            latency_ms=record.latency_ms,
            filters=record.filters,
            share_token=record.share_token,
            inferred_category=str(record.filters["category"])
            if record.filters.get("category_inferred") and record.filters.get("category")
            else None,
            model_name=record.model_name,
            metric=record.metric,
        )

    def search_cheaper(
        self, search_id: int, *, user_ref: str = "cli", source: str = "cli"
    ) -> SearchResult:
        """The same query again, limited to products cheaper than that search's first result."""
        with self.session() as session:
            record = repo.get_search(session, search_id=search_id)
        if record is None or record.query_vector is None or not record.results:
            raise CatalogError("that search is no longer available; please send the photo again")
        first = self.get_product_by_id(int(str(record.results[0]["product_id"])))
        if first is None or first.price is None:
            raise CatalogError("the first result has no price to compare with")
        limit = first.price - Decimal("0.01")
        category = record.filters.get("category")
        return self.search_vector(
            record.query_vector,
            k=int(str(record.filters.get("k") or self.top_k)),
            category=str(category) if category else None,
            max_price=limit,
            user_ref=user_ref,
            source=source,
            extra_filters={"cheaper_than": search_id},
            infer_category=False,
            metric=_metric_of(record.metric),
        )

    def search_all_categories(
        self, search_id: int, *, user_ref: str = "cli", source: str = "cli"
    ) -> SearchResult:
        """The same query again without its category filter."""
        with self.session() as session:
            record = repo.get_search(session, search_id=search_id)
        if record is None or record.query_vector is None:
            raise CatalogError("that search is no longer available; please send the photo again")
        max_price = record.filters.get("max_price")
        return self.search_vector(
            record.query_vector,
            k=int(str(record.filters.get("k") or self.top_k)),
            max_price=Decimal(str(max_price)) if max_price else None,
            user_ref=user_ref,
            source=source,
            extra_filters={"all_categories_of": search_id},
            infer_category=False,
            metric=_metric_of(record.metric),
        )

    def record_feedback(self, search_id: int, *, user_ref: str, vote: int) -> bool:
        """Store a thumbs up (+1) or down (-1). False when the search does not exist."""
        if vote not in (1, -1):
            raise ValueError("vote must be +1 or -1")
        with self.session() as session:
            stored = repo.record_feedback(
                session, search_id=search_id, user_ref=user_ref, vote=vote
            )
            session.commit()
            return stored

    def audit(
        self,
        *,
        user_id: int,
        action: str,
        outcome: str,
        target: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        with self.session() as session:
            repo.audit(
                session,
                user_id=user_id,
                action=action,
                outcome=outcome,
                target=target,
                details=details,
            )
            session.commit()

    def stats(self, *, weak_distance: float, now: datetime | None = None) -> CatalogStats:
        now = now or datetime.now(UTC)
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        with self.session() as session:
            today, _, _ = repo.search_stats(session, since=day_start)
            week, latencies, best = repo.search_stats(session, since=now - timedelta(days=7))
            votes = repo.feedback_counts(session)
            return CatalogStats(
                products_total=repo.count_products(session),
                products_active=repo.count_products(session, active_only=True),
                searches_today=today,
                searches_week=week,
                median_latency_ms=statistics.median(latencies) if latencies else None,
                thumbs_up=votes[1],
                thumbs_down=votes[-1],
                weak_share=(sum(d > weak_distance for d in best) / len(best)) if best else None,
            )

    # ---- catalogue reads -------------------------------------------------------------------

    def get_product(self, sku: str) -> ProductRecord | None:
        with self.session() as session:
            row = repo.get_product(session, sku=sku)
            return ProductRecord.from_row(row) if row else None

    def get_product_by_id(self, product_id: int) -> ProductRecord | None:
        with self.session() as session:
            row = repo.get_product_by_id(session, product_id=product_id)
            return ProductRecord.from_row(row) if row else None

    def require_product(self, sku: str) -> ProductRecord:
        product = self.get_product(sku)
        if product is None:
            raise CatalogError(f"there is no product with SKU {sku!r}")
        return product

    def list_products(
        self, *, include_removed: bool = False, category: str | None = None
    ) -> list[ProductRecord]:
        with self.session() as session:
            return repo.list_products(session, include_removed=include_removed, category=category)

    def categories(self) -> list[str]:
        """Categories of the products customers can currently find."""
        with self.session() as session:
            return repo.active_categories(session)

    def find_products(self, text: str, *, limit: int = 20) -> list[ProductRecord]:
        with self.session() as session:
            return repo.search_products(session, text=text, limit=limit)

    def remember_telegram_file_id(self, image_id: int, file_id: str) -> None:
        with self.session() as session:
            repo.set_telegram_file_id(session, image_id=image_id, file_id=file_id)
            session.commit()

    # ---- catalogue writes ------------------------------------------------------------------

    def add_product(self, fields: ProductFields, image: bytes) -> AddOutcome:
        """Add a product with its photo, or add the photo to the existing product with that SKU.

        Returns only once the product, the image file and its vector are stored and searchable.
        Raises InvalidImageError, CatalogError or db.media.MediaStoreError; nothing is changed then.
        """
        prepared = self.prepare(image)
        vector = self.embed([prepared])[0]  # (dim,)
        return self.store_prepared(fields, prepared, vector)

    def store_prepared(
        self, fields: ProductFields, prepared: PreparedImage, vector: np.ndarray
    ) -> AddOutcome:
        """Store a product image whose raw (dim,) vector is already computed (see add_product)."""
        with self._write_lock:
            model = self.model
            index_vector = model.post.transform(vector)  # (dim,) what the index compares
            with self.session() as session:
                existing_image = repo.find_image_by_hash(
                    session, content_hash=prepared.content_hash
                )
                product = repo.get_product(session, sku=fields.sku)
                if existing_image is not None:
                    if product is None or existing_image.product_id != product.id:
                        owner = repo.get_product_by_id(
                            session, product_id=existing_image.product_id
                        )
                        raise CatalogError(
                            "this exact photo already belongs to product "
                            f"{owner.sku if owner else existing_image.product_id}"
                        )
                    return AddOutcome(
                        product=ProductRecord.from_row(product),
                        image=ImageRecord.from_row(existing_image),
                        created_product=False,
                        created_image=False,
                        near_duplicates=[],
                    )
                exclude = [product.id] if product is not None else []
            near = self._near_duplicates(vector, exclude)
            stored = self.media.save(
                prepared.data,
                content_hash=prepared.content_hash,
                image_format=prepared.image_format,
            )
            try:
                with self.session() as session:
                    product_row = repo.get_product(session, sku=fields.sku)
                    created_product = product_row is None
                    if product_row is None:
                        product_row = repo.create_product(
                            session,
                            sku=fields.sku,
                            name=fields.name,
                            price=fields.price,
                            currency=fields.currency,
                            url=fields.url,
                            category=fields.category,
                        )
                    image_row = repo.add_image(
                        session,
                        product=product_row,
                        file_name=stored.file_name,
                        content_hash=prepared.content_hash,
                        width=prepared.width,
                        height=prepared.height,
                        byte_size=len(prepared.data),
                    )
                    repo.store_embedding(
                        session,
                        image_id=image_row.id,
                        model_name=model.name,
                        vector=vector,
                        index_vector=index_vector,
                    )
                    repo.log_change(session, product_id=product_row.id)
                    session.commit()
                    session.refresh(product_row, ["images"])
                    product_record = ProductRecord.from_row(product_row)
                    image_record = ImageRecord.from_row(image_row)
            except IntegrityError as exc:
                if stored.created:
                    self.media.delete(stored.file_name)
                raise CatalogError(
                    "the catalogue changed at the same moment; please try again"
                ) from exc
            except BaseException:
                if stored.created:
                    self.media.delete(stored.file_name)
                raise
            self.index.upsert_product(facts_of(product_record))
            self.index.add_vectors(
                product_id=product_record.id,
                image_ids=[image_record.id],
                vectors=index_vector[np.newaxis, :],
            )
        return AddOutcome(
            product=product_record,
            image=image_record,
            created_product=created_product,
            created_image=True,
            near_duplicates=near,
        )

    def update_product(self, fields: ProductFields) -> tuple[ProductRecord, bool]:
        """Change an existing product's name, price, URL and category. Returns (product,
        changed)."""
        with self._write_lock, self.session() as session:
            row = repo.get_product(session, sku=fields.sku)
            if row is None:
                raise CatalogError(f"there is no product with SKU {fields.sku!r}")
            new_values = {
                "name": fields.name,
                "price": fields.price,
                "currency": fields.currency,
                "url": fields.url,
                "category": fields.category,
            }
            changed = any(getattr(row, key) != value for key, value in new_values.items())
            if changed:
                for key, value in new_values.items():
                    setattr(row, key, value)
                repo.log_change(session, product_id=row.id)
                session.commit()
                session.refresh(row, ["images"])
            record = ProductRecord.from_row(row)
            if changed:
                self.index.upsert_product(facts_of(record))
            return record, changed

    def remove_product(self, sku: str) -> ProductRecord:
        """Soft delete: gone from results at once, kept in the database."""
        return self._set_flags(sku, removed=True)

    def restore_product(self, sku: str) -> ProductRecord:
        return self._set_flags(sku, removed=False)

    def set_stock(self, sku: str, *, in_stock: bool) -> ProductRecord:
        return self._set_flags(sku, in_stock=in_stock)

    def _set_flags(
        self, sku: str, *, removed: bool | None = None, in_stock: bool | None = None
    ) -> ProductRecord:
        with self._write_lock, self.session() as session:
            row = repo.get_product(session, sku=sku)
            if row is None:
                raise CatalogError(f"there is no product with SKU {sku!r}")
            if removed is not None:
                row.removed = removed
            if in_stock is not None:
                row.in_stock = in_stock
            repo.log_change(session, product_id=row.id)
            session.commit()
            session.refresh(row, ["images"])
            record = ProductRecord.from_row(row)
            # After the commit: the index never shows what the database does not hold.
            self.index.upsert_product(facts_of(record))
            return record

    def _near_duplicates(self, vector: np.ndarray, exclude: list[int]) -> list[ResultItem]:
        hits = self.index.search(
            self.model.post.transform(vector),
            k=3,
            include_inactive=True,
            exclude_product_ids=frozenset(exclude),
        )
        close = [hit for hit in hits if hit.distance <= self.near_duplicate_distance]
        if not close:
            return []
        with self.session() as session:
            return _result_items(session, close)

    # ---- bulk featurisation ----------------------------------------------------------------

    def prepare_many(
        self,
        payloads: Iterable[tuple[str, bytes]],
        *,
        workers: int = 2,
        lookahead: int = 64,
        backbone: BackboneSpec | None = None,
    ) -> Iterable[tuple[str, PreparedImage | InvalidImageError]]:
        """Preprocess in worker threads (PIL releases the GIL while decoding), in order.

        `payloads` is read lazily and at most `lookahead` images are submitted ahead of the one
        being handed out, so a stream of any length needs bounded memory, and the images after
        the current batch are decoded while the caller runs the model on it.
        """
        source = iter(payloads)
        pending: deque[tuple[str, Future[PreparedImage | InvalidImageError]]] = deque()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:

            def submit_next() -> None:
                item = next(source, None)
                if item is not None:
                    pending.append((item[0], pool.submit(self._try_prepare, item[1], backbone)))

            try:
                for _ in range(max(1, lookahead)):
                    submit_next()
                while pending:
                    key, future = pending.popleft()
                    submit_next()
                    yield key, future.result()
            finally:  # the caller stopped early: do not decode the rest
                for _, future in pending:
                    future.cancel()

    def _model_input(self, prepared: PreparedImage, spec: BackboneSpec) -> np.ndarray:
        """The model input of another backbone (the active one changed in between)."""
        image = load_rgb(
            prepared.data, max_pixels=self.max_image_pixels, max_bytes=self.max_image_bytes
        )
        return to_model_input(image, size=spec.input_size, preprocessing=spec.preprocessing)

    def _try_prepare(
        self, data: bytes, backbone: BackboneSpec | None = None
    ) -> PreparedImage | InvalidImageError:
        try:
            return self.prepare(data, backbone=backbone)
        except InvalidImageError as exc:
            return exc


def _metric_of(name: str) -> Metric | None:
    """A logged search's metric, to re-run it the same way (None: the service's default)."""
    for metric in METRICS:
        if metric == name:
            return metric
    return None


def _result_items(session: Session, hits: Sequence[Hit]) -> list[ResultItem]:
    """Index hits -> ranked items with today's product records. A hit whose product or image
    was deleted by another process since the index was loaded is left out."""
    records = repo.get_product_records(session, product_ids=[hit.product_id for hit in hits])
    items: list[ResultItem] = []
    for hit in hits:
        product = records.get(hit.product_id)
        image = _image_of(product, hit.image_id) if product else None
        if product is None or image is None:
            continue
        items.append(
            ResultItem(
                rank=len(items) + 1,
                product=product,
                image=image,
                distance=hit.distance,
                similarity=hit.similarity,
            )
        )
    return items


def _image_of(product: ProductRecord | None, image_id: int) -> ImageRecord | None:
    if product is None:
        return None
    for image in product.images:
        if image.id == image_id:
            return image
    return product.images[0] if product.images else None
