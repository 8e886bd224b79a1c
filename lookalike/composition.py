"""The composition root: the engine assembled from Settings.

Every door (the bot, the command line, the web server, the feed sync) gets its engine here
(`open_engine`); the engine itself never reads Settings. Logging and secret redaction are
lookalike.logs'."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lookalike.settings import Settings
from search import EngineConfig, SearchEngine
from search.featurize import Featurizer, ModelLoader, ModelUnavailableError, weights_tag


def featurizer_provider(
    settings: Settings,
    *,
    calibration_photos: Callable[[int], Sequence[bytes]] | None = None,
    progress: Callable[[str], None] | None = None,
    measure_first: bool = True,
) -> ModelLoader:
    """backbone name -> the model with the settings' weights, on the runtime MODEL_RUNTIME
    names or (auto) the one measured for this CPU on `calibration_photos`. measure_first=False
    (`catalog import`): with nothing valid measured yet, the provisional runtime, said in one
    line, instead of measuring first (search.featurize.loader)."""
    return ModelLoader(
        models_dir=settings.models_dir,
        weights=settings.model_weights,
        seed=settings.model_seed,
        runtime=settings.model_runtime,
        calibration_photos=calibration_photos,
        batch_size=settings.inference_batch_size,
        progress=progress,
        measure_first=measure_first,
    )


def uses_pgvector(settings: Settings) -> bool:
    """Whether the k-nearest query runs in PostgreSQL (pgvector) rather than in memory."""
    if settings.vector_search == "auto":
        return settings.database_url.startswith("postgresql")
    return settings.vector_search == "pgvector"


def served_weights(settings: Settings) -> str | None:
    """The weights tag of the model the settings describe ("imagenet", "random-seed1234",
    "file-<digest>"): what the catalogue's vectors are checked against. None when
    MODEL_WEIGHTS names no file (the model's loading says so, in one line)."""
    try:
        return weights_tag(settings.model_weights, settings.model_seed)
    except ModelUnavailableError:
        return None


def engine_config(settings: Settings) -> EngineConfig:
    if uses_pgvector(settings) and not settings.database_url.startswith("postgresql"):
        raise ValueError("VECTOR_SEARCH=pgvector needs a PostgreSQL DATABASE_URL")
    return EngineConfig(
        database_url=settings.database_url,
        media_dir=settings.media_dir,
        top_k=settings.top_k,
        near_duplicate_distance=settings.near_duplicate_distance,
        max_image_pixels=settings.max_image_pixels,
        max_image_bytes=settings.max_image_bytes,
        metric=settings.search_metric,
        postprocess=settings.postprocess,
        vector_search="pgvector" if uses_pgvector(settings) else "memory",
        hnsw_ef_search=settings.hnsw_ef_search,
        infer_category=settings.infer_category,
        query_expansion=settings.query_expansion,
        colour_weight=settings.colour_weight,
        inference_batch_size=settings.inference_batch_size,
        search_log_retention_days=settings.search_log_retention_days,
        model_weights=served_weights(settings),
    )


def open_engine(
    settings: Settings,
    *,
    featurizer: Callable[[str], Featurizer] | None = None,
    measure_first: bool = True,
) -> SearchEngine:
    """The database brought up to date, the index loaded; the model loads on first use
    (from `featurizer(backbone)`, by default the model the settings describe, served on the
    runtime chosen for this CPU; measure_first: see featurizer_provider)."""
    if featurizer is not None:
        return SearchEngine.open(engine_config(settings), featurizer_provider=featurizer)

    # The runtime is chosen (once per CPU) on the catalogue's own photos: the loader reads
    # them through the engine it serves, which exists by the time a model is first needed.
    def catalogue_photos(limit: int) -> list[bytes]:
        return engine.catalog.sample_photos(limit)

    engine = SearchEngine.open(
        engine_config(settings),
        featurizer_provider=featurizer_provider(
            settings, calibration_photos=catalogue_photos, measure_first=measure_first
        ),
    )
    return engine
