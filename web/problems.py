"""Errors as RFC 9457 problem details (application/problem+json), never a traceback.

Handlers raise `ProblemError`; the framework's own errors (404 for an unknown path, 405, 422 for a
request that does not match the schema) and anything unexpected are turned into the same
shape here. An unexpected error is logged with its traceback and answered with a generic 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lookalike.i18n import from_accept_language, translator

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
}


class ProblemError(Exception):
    """An answer that is an error: `status`, a one-line `detail` safe to show a customer, and
    a short machine-readable `kind` (also the metrics label), e.g. "invalid-image".

    A `detail` marked N_("... {name} ...") with its `values` is answered in the language of
    the request's Accept-Language (lookalike/i18n), English when the catalogues lack it."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        values: dict[str, object] | None = None,
    ) -> None:
        self.values = values or {}
        super().__init__(detail.format(**self.values) if self.values else detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.headers = headers or {}
        self.extra = extra or {}


def problem_response(
    status: int,
    detail: str,
    *,
    kind: str,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        # A relative reference naming the kind; the kinds are listed in the README (web API).
        "type": f"/problems/{kind}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _describe_validation(errors: Sequence[Any]) -> str:
    """One line naming each field that is wrong: "k: Input should be less than or equal to 50"."""
    parts = []
    for error in errors[:5]:
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query")]
        where = ".".join(location) or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"


def install_problem_handlers(app: FastAPI, on_error: Callable[[str], None]) -> None:
    """Every error the app answers becomes problem+json; `on_error(kind)` counts it."""

    async def problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        on_error(exc.kind)
        t = translator(from_accept_language(request.headers.get("accept-language")))
        return problem_response(
            exc.status,
            t(exc.detail, **exc.values),
            kind=exc.kind,
            instance=request.url.path,
            headers={**exc.headers, "Content-Language": t.language},
            extra=exc.extra,
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kind = {400: "bad-request", 404: "not-found", 405: "method-not-allowed"}.get(
            exc.status_code, "http-error"
        )
        on_error(kind)
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"there is nothing at {request.url.path}"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return problem_response(
            exc.status_code,
            detail,
            kind=kind,
            instance=request.url.path,
            headers=dict(exc.headers or {}),
        )

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        on_error("invalid-request")
        return problem_response(
            422,
            _describe_validation(exc.errors()),
            kind="invalid-request",
            instance=request.url.path,
        )

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        on_error("internal")
        return problem_response(
            500,
            "something went wrong on our side; please try again",
            kind="internal",
            instance=request.url.path,
        )

    app.add_exception_handler(ProblemError, problem)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
