"""The OpenAPI document as clients generated from it need it, and its interactive docs.

Every error the server answers is application/problem+json (web/problems.py), so every
operation documents the statuses it can answer with the Problem schema, FastAPI's own
422 (a `HTTPValidationError` body we never send) replaced. /docs is Swagger UI from assets
served by this server (the fastapi-offline package ships them), so it works offline and
under a Content-Security-Policy without third-party hosts."""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from web.problems import PROBLEM_JSON, TITLES

DOCS_ASSETS = "/docs/assets"
# Any request: malformed (400), an unknown path (404), a body too large (413), a schema
# mismatch (422), or our fault (500). 405 is left out: only methods the document names are sent.
_EVERY_OPERATION = (400, 404, 413, 422, 500)
# Per path prefix and method, what else it answers.
_BY_OPERATION: dict[tuple[str, str], tuple[int, ...]] = {
    ("/api/v1/search", "post"): (415, 429, 503),
    ("/api/v1/searches/{search_id}/feedback", "post"): (429,),
    ("/api/v1/products/{sku}/similar", "get"): (429, 503),
    ("/readyz", "get"): (503,),
}
_WRITE = (401, 409, 415, 429, 503)  # every operation behind an API key
_NOT_MODIFIED = ("/media/{file_name}",)

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details: every error answer",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "/problems/<kind>, e.g. /problems/too-large"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "one line, safe to show a customer"},
        "instance": {"type": "string", "description": "the request's path"},
    },
}


def _statuses(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    statuses = set(_EVERY_OPERATION) | set(_BY_OPERATION.get((path, method), ()))
    if any(scheme for scheme in operation.get("security", [])):
        statuses |= set(_WRITE)
    return sorted(statuses)


def problem_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with every operation's error answers as problem+json."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status in _statuses(path, method, operation):
                described = responses.get(str(status), {})
                responses[str(status)] = {
                    "description": described.get("description") or TITLES[status],
                    "content": {**problem, **_kept_content(described, status)},
                }
            if path in _NOT_MODIFIED:
                responses["304"] = {"description": "not modified (If-None-Match)"}
    return document


def _kept_content(described: dict[str, Any], status: int) -> dict[str, Any]:
    """A documented non-problem body of an error status (readyz's 503 is its HealthOut)."""
    content = dict(described.get("content", {}))
    if status == 422:  # FastAPI's HTTPValidationError: never sent
        content.pop("application/json", None)
    return content


def install_docs(app: FastAPI) -> None:
    """/openapi.json with problem+json errors, /docs from local assets (no CDN)."""
    cached: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not cached:
            cached.update(problem_document(app))
        return cached

    app.openapi = openapi  # type: ignore[method-assign]
    assets = resources.files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title}: API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )
