"""The web app: `create_app(engine, config)` -> a FastAPI application over an engine someone
else opened (serve.py from Settings, tests their own), so the app never opens one itself.

Why FastAPI on uvicorn: the engine's boundary is async (`await engine.search_photo(...)`
batches concurrent searches in one inference worker), so the server must be an asyncio one
sharing the engine's event loop; FastAPI gives typed request parsing and the OpenAPI schema
with interactive docs (/docs) from the same pydantic models, and uvicorn is the ASGI server it
is built for. One process holds the model once; uvicorn's single worker is on purpose
(several workers would each load the model).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.formparsers import MultiPartParser

from db import AppSecrets
from lookalike.limits import SEARCH, RateLimiter
from lookalike.upkeep import Job, run_repeating, start_engine, upkeep_jobs
from web import admin_api, catalog_api, i18n, media, ops, search_api
from web.config import WebConfig
from web.context import REFUSED, VOTE, WRITE, WebContext
from web.keys import KeyChecker
from web.limits import BODY_OVERHEAD_BYTES, BodyLimitMiddleware
from web.metrics import RequestMetricsMiddleware, WebMetrics
from web.openapi import install_docs
from web.problems import install_problem_handlers
from web.protocol import ProblemCorsMiddleware, ProtocolMiddleware, page_policy

if TYPE_CHECKING:
    from search import SearchEngine
    from web.telegram import TelegramWebhook

log = logging.getLogger(__name__)

STATIC_DIR = resources.files("web") / "static"
API_VERSION = "1.0.0"
USER_REF_SECRET = "web-user-ref"  # app_secrets' row of the client-reference key


def _gauges(engine: SearchEngine) -> dict[str, float]:
    return {
        "lookalike_catalog_products": float(engine.status().products_searchable),
        "lookalike_inference_batches": float(engine.batches_run),
        "lookalike_inference_images": float(engine.images_embedded),
    }


def create_app(
    engine: SearchEngine,
    config: WebConfig | None = None,
    *,
    telegram: TelegramWebhook | None = None,
    upkeep: Sequence[Job] | None = None,
) -> FastAPI:
    """`telegram`: also take the bot's webhook (started and stopped with the app; the bot
    then runs no upkeep of its own). `upkeep`: the process's repeating jobs, run while the app
    does (lookalike.upkeep; serve.py adds the feed's); None: the index sync every
    `config.index_sync_seconds` and the search log's retention."""
    config = config or WebConfig()
    if upkeep is None:
        upkeep = upkeep_jobs(engine, index_sync_seconds=config.index_sync_seconds)
    if config.user_ref_key is None:
        shared_key = AppSecrets(engine.sessions).get_or_create(USER_REF_SECRET)
        config = dataclasses.replace(config, user_ref_key=shared_key)

    async def load() -> None:
        """Warm-up (and the bot's start) after the server listens: /healthz answers at once,
        /readyz says "loading" until the model has run once."""
        try:
            await start_engine(engine)
            if telegram is not None:
                await telegram.start()
        except Exception:
            context.model_state = "failed"
            log.exception("the model could not be loaded; /readyz answers 503 until a restart")
            return
        context.model_state = "loaded"
        log.info("web ready: %d products searchable", engine.status().products_searchable)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Started before the warm-up, so searches that arrive meanwhile queue for the model
        # (start_engine's own start is then a no-op).
        await engine.start()
        loading = asyncio.create_task(load())
        jobs = [asyncio.create_task(run_repeating(job), name=job.name) for job in upkeep]
        try:
            yield
        finally:
            ready, context.model_state = context.model_state, "stopping"
            for task in (loading, *jobs):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if telegram is not None and ready == "loaded":
                await telegram.stop()
            await engine.stop()

    app = FastAPI(
        title="Lookalike",
        version=API_VERSION,
        description="Visual product search: send a photo, get the most similar products.",
        lifespan=lifespan,
        docs_url=None,  # install_docs: Swagger UI from local assets
        redoc_url=None,
    )
    metrics = WebMetrics(lambda: _gauges(engine))
    context = WebContext(
        engine=engine,
        config=config,
        metrics=metrics,
        limits=RateLimiter(
            engine.sessions,
            {
                SEARCH: config.searches_per_minute,
                VOTE: config.searches_per_minute,  # a vote follows a search
                WRITE: config.writes_per_minute,
                # Refused key checks, limited like writes: a flood of bad keys neither
                # guesses on unchecked nor fills the audit log.
                REFUSED: config.writes_per_minute,
            },
        ),
        keys=KeyChecker(engine, engine.sessions),
    )
    app.state.context = context
    install_problem_handlers(app, lambda kind: metrics.errors.labels(kind=kind).inc())

    app.include_router(search_api.router(engine, context))
    app.include_router(catalog_api.router(engine, context))
    app.include_router(admin_api.router(engine, context))
    app.include_router(media.router(engine))
    app.include_router(ops.router(engine, context))
    if telegram is not None:
        app.include_router(telegram.router())
    install_docs(app)
    _mount_page(app)

    # Outermost last: the protocol's headers go on every answer (413s and preflights too),
    # the body limit sees the raw stream, then CORS answers preflights.
    app.add_middleware(
        ProblemCorsMiddleware,
        allow_origins=list(config.cors_origins),
        allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    body_limit = engine.config.max_image_bytes + BODY_OVERHEAD_BYTES
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=body_limit,
        on_refused=lambda: metrics.errors.labels(kind="too-large").inc(),
    )
    # Customers' photos never touch the disk: Starlette spools an uploaded file to a temporary
    # file past `spool_max_size` (1 MB by default); every body we accept fits in memory.
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, body_limit)
    pages = {"/": "index.html", "/static/embed.html": "embed.html"}
    policies = {path: page_policy((STATIC_DIR / name).read_text()) for path, name in pages.items()}
    app.add_middleware(RequestMetricsMiddleware, requests=metrics.requests)
    app.add_middleware(ProtocolMiddleware, routes_of=app, policies=policies)
    return app


def _mount_page(app: FastAPI) -> None:
    """The search page (/), its assets (/static/...) and the embeddable widget (/embed.js)."""
    static = str(STATIC_DIR)

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return FileResponse(f"{static}/index.html", media_type="text/html; charset=utf-8")

    @app.get("/embed.js", include_in_schema=False)
    async def embed() -> Response:
        return FileResponse(f"{static}/embed.js", media_type="text/javascript; charset=utf-8")

    app.include_router(i18n.router())  # /i18n.json: the page's words in the visitor's language
    app.mount("/static", StaticFiles(directory=static), name="static")
