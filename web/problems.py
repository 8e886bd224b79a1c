"""Errors as RFC 9457 problem details (application/problem+json), never a traceback.

Handlers raise `ProblemError`; the framework's own errors (404 for an unknown path, 405, 422 for a
request that does not match the schema) and anything unexpected are turned into the same
shape here. An unexpected error is logged with its traceback and answered with a generic 500.

Every `detail` is written in the language of the request's Accept-Language (lookalike/i18n),
named by Content-Language; the engine's own reasons (search/ speaks English) and the titles (a
fixed label per status, like `type`) stay English.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lookalike.i18n import N_, Translator, from_accept_language, translator

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


NOTHING_AT = N_("there is nothing at {path}")
NOT_ALLOWED = N_("{method} is not allowed on {path}")
INTERNAL = N_("something went wrong on our side; please try again")


def request_translator(request: Request) -> Translator:
    """The request's Accept-Language, as a Translator (English when it names none we have)."""
    return translator(from_accept_language(request.headers.get("accept-language")))


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

    def detail_in(self, t: Translator) -> str:
        return t(self.detail, **self.values)


class InvalidRequestError(ProblemError):
    """422: the fields a request got wrong, described in the reader's language."""

    def __init__(self, errors: Sequence[Any], *, prefix: Sequence[str] = ()) -> None:
        self.errors = list(errors)
        self.prefix = tuple(prefix)  # location parts left out ("body", "query")
        super().__init__(
            422, describe_validation(self.errors, prefix=prefix), kind="invalid-request"
        )

    def detail_in(self, t: Translator) -> str:
        return describe_validation(self.errors, prefix=self.prefix, t=t)


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


# Pydantic's error types a request most often hits, as sentences in the catalogues (pydantic
# writes English); any other type keeps pydantic's message. {name} placeholders come from the
# error's ctx.
VALIDATION_MESSAGES = {
    "missing": N_("this field is required"),
    "extra_forbidden": N_("this field is not expected"),
    "less_than_equal": N_("should be at most {le}"),
    "less_than": N_("should be less than {lt}"),
    "greater_than_equal": N_("should be at least {ge}"),
    "greater_than": N_("should be greater than {gt}"),
    "int_parsing": N_("should be a whole number"),
    "int_type": N_("should be a whole number"),
    "float_parsing": N_("should be a number"),
    "decimal_parsing": N_("should be a number"),
    "string_type": N_("should be text"),
    "string_too_long": N_("should be at most {max_length} characters long"),
    "string_too_short": N_("should be at least {min_length} characters long"),
    "string_pattern_mismatch": N_("is not in the expected form"),
    "literal_error": N_("should be one of {expected}"),
    "json_invalid": N_("the body is not valid JSON"),
    "url_parsing": N_("is not a valid URL"),
    "bool_parsing": N_("should be true or false"),
}
REQUEST = N_("request")
NOT_VALID = N_("the request is not valid")


def describe_validation(
    errors: Sequence[Any], *, prefix: Sequence[str] = ("body", "query"), t: Translator | None = None
) -> str:
    """One line naming each field that is wrong: "k: should be at most 50" (or pydantic's own
    English message for an error type not listed above)."""
    t = t or translator(None)
    parts = []
    for error in errors[:5]:
        location = [str(part) for part in error.get("loc", ()) if part not in prefix]
        where = ".".join(location) or t(REQUEST)
        message = VALIDATION_MESSAGES.get(error.get("type", ""))
        context = {name: str(value) for name, value in (error.get("ctx") or {}).items()}
        text = t(message, **context) if message else str(error.get("msg", "invalid"))
        parts.append(f"{where}: {text}")
    return "; ".join(parts) or t(NOT_VALID)


def install_problem_handlers(app: FastAPI, on_error: Callable[[str], None]) -> None:
    """Every error the app answers becomes problem+json; `on_error(kind)` counts it."""

    async def problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        on_error(exc.kind)
        t = request_translator(request)
        return problem_response(
            exc.status,
            exc.detail_in(t),
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
        t = request_translator(request)
        path = request.url.path
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
        if exc.status_code == 404 and detail == "Not Found":
            detail = t(NOTHING_AT, path=path)
        elif exc.status_code == 405:
            detail = t(NOT_ALLOWED, method=request.method, path=path)
        else:
            detail = t(detail) if detail else detail
        return problem_response(
            exc.status_code,
            detail,
            kind=kind,
            instance=path,
            headers={**(exc.headers or {}), "Content-Language": t.language},
        )

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        on_error("invalid-request")
        t = request_translator(request)
        return problem_response(
            422,
            describe_validation(exc.errors(), t=t),
            kind="invalid-request",
            instance=request.url.path,
            headers={"Content-Language": t.language},
        )

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        on_error("internal")
        t = request_translator(request)
        return problem_response(
            500,
            t(INTERNAL),
            kind="internal",
            instance=request.url.path,
            headers={"Content-Language": t.language},
        )

    app.add_exception_handler(ProblemError, problem)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
