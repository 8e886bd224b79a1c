"""`lookalike reindex --model NAME`: compute every image's vector with another backbone, then
switch searches to it in one transaction, only once every image has one.

The work is resumable: each batch of vectors is committed as it is computed (stored under the
new model's name, beside the old model's), so an interrupted run (Ctrl-C, a crash, kill -9)
loses at most one batch and the next run continues where it stopped. Until the switch, the
old model stays active: searches, /add and every other process keep using it. The switch
happens under the model manager's write lock, after a last pass over images added meanwhile: the new
model's post-processing is fitted on its vectors, its index vectors written (and its HNSW index
created on PostgreSQL), it becomes the active model, and a catalog_changes row tells the other
processes to reload.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from db import repository as repo
from db.locks import hold_catalogue_exclusively
from db.tables import ProductImage, SearchModel
from search.colour import stored_colour
from search.errors import CatalogError
from search.featurize import BackboneSpec, PreparedImage, get_backbone
from search.stored_photos import prepared_batches

if TYPE_CHECKING:
    from search.engine import SearchEngine

log = logging.getLogger(__name__)

_MAX_PASSES = 5  # passes over images added while reindexing, before giving up the switch


@dataclass(slots=True)
class ReindexSummary:
    model_name: str
    computed: int = 0  # vectors computed by this run
    already: int = 0  # images that had a vector of this model before this run
    failed: list[tuple[int, str]] = field(default_factory=list)  # (image id, reason)
    switched: bool = False
    seconds: float = 0.0


def reindex(
    engine: SearchEngine,
    backbone_name: str,
    *,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ReindexSummary:
    """Vectors of `backbone_name` for every image, then the switch (see the module doc).

    Raises ValueError for an unknown backbone and CatalogError when some images cannot be
    featurised (the old model then stays active; the vectors computed are kept).
    """
    started = time.perf_counter()
    spec = get_backbone(backbone_name)
    summary = ReindexSummary(model_name=spec.model_name)
    advance = progress or (lambda _n: None)
    _register(engine, spec)
    with engine.sessions() as session:
        summary.already = repo.count_embeddings(session, model_name=spec.model_name)
    for _ in range(_MAX_PASSES):
        failed = {image_id for image_id, _ in summary.failed}
        with engine.sessions() as session:
            missing = [
                (image.id, image.file_name)
                for image in repo.images_missing_embedding(session, model_name=spec.model_name)
                if image.id not in failed
            ]
        if on_total is not None and summary.computed == 0:
            on_total(len(missing))
        if missing:
            _compute(engine, spec, missing, batch_size, summary, advance)
            continue
        if summary.failed:
            raise CatalogError(
                f"{len(summary.failed)} image(s) could not be featurised "
                f"(first: image {summary.failed[0][0]}: {summary.failed[0][1]}); "
                f"searches still use {engine.models.active.name}"
            )
        if _switch(engine, spec):
            summary.switched = True
            break
    else:
        raise CatalogError("images kept being added while reindexing; run the command again")
    engine.models.reload()
    summary.seconds = time.perf_counter() - started
    log.info(
        "reindex %s: %d computed, %d already there, switched in %.1f s",
        spec.model_name,
        summary.computed,
        summary.already,
        summary.seconds,
    )
    return summary


def _register(engine: SearchEngine, spec: BackboneSpec) -> None:
    with engine.sessions.begin() as session:
        if repo.get_model(session, name=spec.model_name) is None:
            session.add(
                SearchModel(
                    name=spec.model_name,
                    backbone=spec.name,
                    dim=spec.dim,
                    state="indexing",
                    active=False,
                )
            )


def _compute(
    engine: SearchEngine,
    spec: BackboneSpec,
    missing: list[tuple[int, str]],
    batch_size: int,
    summary: ReindexSummary,
    advance: Callable[[int], None],
) -> None:
    """Featurise `missing` (image id, file name) in batches, committing each batch."""

    for batch in prepared_batches(
        engine,
        missing,
        backbone=spec,
        batch_size=batch_size,
        failed=summary.failed,
        advance=advance,
    ):
        _store_batch(engine, spec, batch, summary, advance)


def _store_batch(
    engine: SearchEngine,
    spec: BackboneSpec,
    batch: list[tuple[int, PreparedImage]],
    summary: ReindexSummary,
    advance: Callable[[int], None],
) -> None:
    vectors = engine.models.embed([prepared for _, prepared in batch], backbone=spec)  # (n, dim)
    with engine.sessions.begin() as session:
        for (image_id, prepared), vector in zip(batch, vectors, strict=True):
            image = session.get(ProductImage, image_id)
            if image is None:
                continue  # deleted meanwhile
            if image.colour is None and prepared.colour is not None:  # decoded anyway
                image.colour, image.colour_name = stored_colour(prepared.colour)
            repo.store_embedding(
                session, image_id=image_id, model_name=spec.model_name, vector=vector
            )
    summary.computed += len(batch)
    advance(len(batch))


def _switch(engine: SearchEngine, spec: BackboneSpec) -> bool:
    """Make the model active if every image has its vector; False if some were added since."""
    # Not `sessions.begin()`: the transaction is opened by the lock itself (SQLite: a raw
    # BEGIN IMMEDIATE on the connection), and "not yet" (False) ends it with a rollback.
    with engine.models.write_lock, engine.sessions() as session:
        # Checked and switched under the database's lock: no other process's add can commit
        # in between (it would have only the old model's vector).
        hold_catalogue_exclusively(session)
        if repo.images_missing_embedding(session, model_name=spec.model_name):
            return False
        row = repo.get_model(session, name=spec.model_name)
        assert row is not None
        engine.models.fit_postprocess(session, row)  # index vectors written, change logged
        if session.get_bind().dialect.name == "postgresql":
            from search.index import ensure_hnsw_index

            ensure_hnsw_index(session, model_name=spec.model_name, dim=spec.dim)
        for other in repo.list_models(session):
            other.active = other.name == spec.model_name
        row.state = "ready"
        session.commit()
    return True
