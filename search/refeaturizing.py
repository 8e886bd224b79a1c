"""The catalogue's vectors computed again with the served model, when it is not what produced
them: other weights (never compared: serving refuses until this is done), or another runtime
(`lookalike model build` after the runtime was measured on the catalogue's photos).

Every image of the active model is featurised with the given model first, in batches, while
searches go on over the old vectors; then, in one transaction under the catalogue's lock
(images added meanwhile featurised there too), every vector is replaced, the
post-processing fitted again, the producer recorded (search_models.weights, .runtime) and a
catalog_changes row tells other processes to reload. A failure before the switch changes
nothing. Memory: the new (n, dim) float32 vectors are held until the switch (100 000 images
of 512 values: 200 MB).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from db import repository as repo
from db.locks import hold_catalogue_exclusively
from search.active_model import producer_runtime
from search.errors import CatalogError
from search.featurize import Featurizer
from search.stored_photos import prepared_batches

if TYPE_CHECKING:
    from search.engine import SearchEngine

__all__ = ["RefeaturizeSummary", "refeaturize", "refeaturize_reason"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RefeaturizeSummary:
    model_name: str
    previous: str  # what had produced the vectors, e.g. "random-seed1234 on openvino-bf16"
    current: str  # what produced them now
    computed: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)  # (image id, reason)
    seconds: float = 0.0


def refeaturize_reason(engine: SearchEngine, featurizer: Featurizer, *, weights: str) -> str | None:
    """Why the active model's stored vectors must be computed again with `featurizer` (of
    `weights`, search.featurize.weights_tag), or None when they are its own (or there are
    none, or their producer is not recorded yet: adopted at the next load)."""
    runtime = producer_runtime(featurizer)
    with engine.sessions() as session:
        row = repo.get_model(session, name=engine.models.active.name)
        if row is None or not repo.count_embeddings(session, model_name=row.name):
            return None
        if row.weights is not None and row.weights != weights:
            return f"made with weights {row.weights}, the model has {weights}"
        if row.runtime is not None and row.runtime != runtime:
            return f"made on {row.runtime}, queries run on {runtime}"
    return None


def refeaturize(
    engine: SearchEngine,
    featurizer: Featurizer,
    *,
    weights: str,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> RefeaturizeSummary:
    """Every image's vector of the active model computed with `featurizer`, then switched in
    one transaction (see the module doc). Raises CatalogError when some images cannot be
    featurised (nothing is changed then)."""
    started = time.perf_counter()
    model = engine.models.active
    runtime = producer_runtime(featurizer)
    with engine.sessions() as session:
        row = repo.get_model(session, name=model.name)
        previous = f"{row.weights} on {row.runtime}" if row is not None else "nothing"
        images = repo.image_files(session)
    summary = RefeaturizeSummary(model.name, previous=previous, current=f"{weights} on {runtime}")
    if on_total is not None:
        on_total(len(images))
    vectors = _featurize(engine, featurizer, images, batch_size, summary, progress)
    if summary.failed:
        raise CatalogError(
            f"{len(summary.failed)} image(s) could not be featurised (first: image "
            f"{summary.failed[0][0]}: {summary.failed[0][1]}); the vectors are unchanged"
        )
    # Not `sessions.begin()`: the transaction is opened by the lock itself (SQLite: a raw
    # BEGIN IMMEDIATE on the connection).
    with engine.models.write_lock, engine.sessions() as session:
        hold_catalogue_exclusively(session)  # no other process's add commits in between
        added = [image for image in repo.image_files(session) if image[0] not in vectors]
        vectors.update(_featurize(engine, featurizer, added, batch_size, summary, None))
        if summary.failed:
            raise CatalogError(f"image {summary.failed[0][0]}: {summary.failed[0][1]}")
        for image_id, vector in vectors.items():
            repo.store_embedding(session, image_id=image_id, model_name=model.name, vector=vector)
        row = repo.get_model(session, name=model.name)
        if row is None:
            raise CatalogError(f"model {model.name} was removed meanwhile")
        engine.models.fit_postprocess(session, row)  # index vectors rewritten, change logged
        row.weights, row.runtime = weights, runtime
        session.commit()
    engine.models.reload()
    summary.seconds = time.perf_counter() - started
    log.info(
        "%s: %d vectors featurised again (%s, were %s) in %.1f s",
        model.name,
        summary.computed,
        summary.current,
        summary.previous,
        summary.seconds,
    )
    return summary


def _featurize(
    engine: SearchEngine,
    featurizer: Featurizer,
    images: list[tuple[int, str]],
    batch_size: int,
    summary: RefeaturizeSummary,
    progress: Callable[[int], None] | None,
) -> dict[int, np.ndarray]:
    """image id -> its (dim,) float32 vector from `featurizer`, for (image id, file name)
    pairs; failures go to summary.failed."""
    advance = progress or (lambda _n: None)
    spec = engine.models.active.backbone
    vectors: dict[int, np.ndarray] = {}

    for batch in prepared_batches(
        engine,
        images,
        backbone=spec,
        batch_size=batch_size,
        failed=summary.failed,
        advance=advance,
    ):
        prepared = [item for _, item in batch]
        out = engine.models.embed(prepared, backbone=spec, featurizer=featurizer)  # (n, dim)
        vectors.update((image_id, out[row]) for row, (image_id, _) in enumerate(batch))
        summary.computed += len(batch)
        advance(len(batch))
    return vectors
