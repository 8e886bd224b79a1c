"""Operations endpoints: /healthz (the process answers), /readyz (the model is loaded and the
database answers), /metrics (Prometheus text format)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from web.schemas import HealthOut

if TYPE_CHECKING:
    from search import SearchEngine
    from web.context import WebContext


def database_answers(engine: SearchEngine) -> bool:
    try:
        with engine.sessions() as session:
            session.execute(text("SELECT 1"))
        return True
    except Exception:  # any failure means "not ready"; the reason is in the log
        return False


def router(engine: SearchEngine, context: WebContext) -> APIRouter:
    routes = APIRouter(tags=["operations"])

    @routes.get("/healthz", response_model=HealthOut, summary="The process is up")
    async def healthz() -> HealthOut:
        return HealthOut(status="ok")

    @routes.get(
        "/readyz",
        response_model=HealthOut,
        summary="Ready for searches: model loaded, database reachable (503 otherwise)",
        responses={503: {"model": HealthOut}},
    )
    async def readyz() -> Response:
        checks = {
            "model": context.model_state,
            "database": "ok" if await engine.run(database_answers, engine) else "unreachable",
        }
        ready = checks["model"] == "loaded" and checks["database"] == "ok"
        body = HealthOut(status="ready" if ready else "not ready", checks=checks)
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)

    @routes.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    async def metrics() -> Response:
        return Response(context.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return routes
