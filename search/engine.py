"""The engine's front door: one object that holds the catalogue, the searcher, the model
manager and the search history over one database, and the one async boundary doors await.

Doors (the bot, the command line, the web server, the feed sync) get an `SearchEngine` from the
composition root, call into it, and render what it returns. Blocking work (decoding, the
model, the database) leaves the event loop here and nowhere else: `search_photo` and
`add_photo` send the model's part through the batching inference worker, and `run` sends any
other engine call to the engine's thread pool.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import numpy as np
from sqlalchemy import Engine as DatabaseEngine
from sqlalchemy.orm import Session, sessionmaker

from db import repository as repo
from db.database import create_db_engine, create_session_factory
from db.media import MediaStore
from db.migrate import ensure_up_to_date
from db.records import ProductFields
from search.active_model import ModelManager
from search.catalog import AddOutcome, Catalog
from search.colour import describe_image
from search.config import EngineConfig
from search.featurize import Featurizer, ImagePreparer, PreparedImage
from search.history import SearchHistory
from search.index import LiveIndex
from search.inference import InferenceWorker
from search.results import SearchResult
from search.searcher import Requester, Searcher, SearchQuery

__all__ = ["EngineStatus", "SearchEngine", "StoredModel"]

P = ParamSpec("P")
R = TypeVar("R")

# Threads for blocking engine calls from the event loop: enough for database round trips of
# several concurrent requests; the model itself runs in the inference worker's thread.
BLOCKING_THREADS = 8


@dataclass(frozen=True, slots=True)
class EngineStatus:
    model_name: str  # the active model, e.g. "vgg16_avgpool"
    products_searchable: int  # in stock, not removed, with a vector
    vectors: int  # image vectors in the index
    model_loaded: bool  # the featurizer is in memory (after warm_up or a first search)


@dataclass(frozen=True, slots=True)
class StoredModel:
    """A backbone whose vectors the catalogue holds (`lookalike model list`)."""

    name: str  # e.g. "vgg16_avgpool"
    dim: int  # values per vector, e.g. 512
    state: str  # "indexing" (a reindex under way) | "ready"
    active: bool  # searches use it
    vectors: int  # images with this model's vector
    images: int  # images in the catalogue
    # What produced the vectors (None: not recorded yet): weights tag, runtime.
    weights: str | None = None
    runtime: str | None = None


class SearchEngine:
    def __init__(
        self,
        config: EngineConfig,
        *,
        sessions: sessionmaker[Session],
        featurizer_provider: Callable[[str], Featurizer],
        database: DatabaseEngine | None = None,
        media: MediaStore | None = None,
    ) -> None:
        """Prefer `SearchEngine.open`. `featurizer_provider(backbone_name)` loads a backbone's
        model; it is called on first use only (commands that never featurise never load it).
        `media`: the image store (default: files under config.media_dir)."""
        self.config = config
        # For the doors' own stores beside the catalogue in the same database (db's ApiKeys,
        # RateLimits, Drafts, FeedLedger, Leases).
        self.sessions = sessions
        self.media = media or MediaStore(config.media_dir)
        self._database = database
        live = LiveIndex(
            sessions,
            vector_search=config.vector_search,
            hnsw_ef_search=config.hnsw_ef_search,
            dim=512,
        )
        self.models = ModelManager(
            sessions=sessions,
            featurizer_provider=featurizer_provider,
            preparer=ImagePreparer(
                max_pixels=config.max_image_pixels,
                max_bytes=config.max_image_bytes,
                # every photo's colour, as it is decoded
                describe_colour=describe_image if config.describe_colours else None,
            ),
            live=live,
            media=self.media,
            postprocess=config.postprocess,
            weights=config.model_weights,
        )
        self.catalog = Catalog(
            sessions=sessions,
            media=self.media,
            models=self.models,
            live=live,
            near_duplicate_distance=config.near_duplicate_distance,
        )
        self.searcher = Searcher(
            sessions=sessions,
            models=self.models,
            top_k=config.top_k,
            metric=config.metric,
            infer_category=config.infer_category,
            query_expansion=config.query_expansion,
            near_duplicate_distance=config.near_duplicate_distance,
            colour_weight=config.colour_weight,
        )
        self.history = SearchHistory(sessions, retention_days=config.search_log_retention_days)
        self._inference = InferenceWorker(self.models.embed, max_batch=config.inference_batch_size)
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def open(
        cls,
        config: EngineConfig,
        *,
        featurizer_provider: Callable[[str], Featurizer],
        database: DatabaseEngine | None = None,
        media: MediaStore | None = None,
    ) -> SearchEngine:
        """Bring the database up to date, then load the index from it."""
        if config.vector_search == "pgvector" and not config.database_url.startswith("postgresql"):
            raise ValueError("VECTOR_SEARCH=pgvector needs a PostgreSQL DATABASE_URL")
        database = database or create_db_engine(config.database_url)
        ensure_up_to_date(database)
        engine = cls(
            config,
            sessions=create_session_factory(database),
            featurizer_provider=featurizer_provider,
            database=database,
            media=media,
        )
        engine.models.reload()
        return engine

    def close(self) -> None:
        """Release threads and database connections (SQLite checkpoints its WAL)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._database is not None:
            self._database.dispose()

    # ---- the async boundary ----------------------------------------------------------------

    async def start(self) -> None:
        """Start the batching inference worker (in the running event loop)."""
        await self._inference.start()

    async def stop(self) -> None:
        await self._inference.stop()

    @property
    def batches_run(self) -> int:
        """Batches the inference worker ran (and images in them: `images_embedded`)."""
        return self._inference.batches_run

    @property
    def images_embedded(self) -> int:
        return self._inference.images_embedded

    async def run(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Any blocking engine call, off the event loop."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(BLOCKING_THREADS, thread_name_prefix="engine")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def search_photo(self, data: bytes, query: SearchQuery, who: Requester) -> SearchResult:
        """Photo bytes -> the k most similar products (featurised in a shared batch).
        Raises InvalidImageError with a reason to show."""
        started = time.perf_counter()
        prepared = await self.run(self.models.prepare, data)
        vector = await self._embed(prepared)
        # No query_hash is logged: the sha256 of a customer's photo identifies that photo.
        return await self.run(
            self.searcher.search_vector,
            vector,
            query,
            who,
            colour=prepared.colour,
            started=started,
        )

    async def add_photo(self, fields: ProductFields, data: bytes) -> AddOutcome:
        """A product photo checked, featurised (in a shared batch) and stored atomically.
        Raises InvalidImageError, CatalogError or MediaStoreError; nothing is changed then."""
        prepared = await self.run(self.models.prepare, data)
        vector = await self._embed(prepared)
        return await self.run(self.catalog.store, fields, prepared, vector)

    async def _embed(self, prepared: PreparedImage) -> np.ndarray:
        if self._inference.running:
            return await self._inference.embed(prepared)
        # Not started (a one-off command): featurise in the engine's threads.
        vectors: np.ndarray = await self.run(self.models.embed, [prepared])  # (1, dim)
        return np.asarray(vectors[0], dtype=np.float32)

    # ---- upkeep ----------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Load the model and run it once, so the first customer does not wait for that."""
        self.models.warm_up()

    def sweep_orphan_files(self) -> list[str]:
        """Image files left by interrupted adds, long enough ago (see Catalog)."""
        return self.catalog.sweep_orphan_files()

    def stored_models(self) -> list[StoredModel]:
        """Every model the catalogue holds vectors of, by name, with how far its vectors go."""
        with self.sessions() as session:
            images = repo.count_images(session)
            return [
                StoredModel(
                    name=row.name,
                    dim=row.dim,
                    state=row.state,
                    active=row.active,
                    vectors=repo.count_embeddings(session, model_name=row.name),
                    images=images,
                    weights=row.weights,
                    runtime=row.runtime,
                )
                for row in repo.list_models(session)
            ]

    def status(self) -> EngineStatus:
        """What a log line, a health check or /stats says about the engine."""
        index = self.models.index
        return EngineStatus(
            model_name=self.models.active.name,
            products_searchable=index.product_count(),
            vectors=len(index),
            model_loaded=self.models.loaded,
        )
