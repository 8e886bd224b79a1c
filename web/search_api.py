"""The customer's API: search by photo (an upload or an image URL), a shared result set, and
feedback on a result set. Handlers parse, make one engine call, render."""

from __future__ import annotations

import functools
import re
import time
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from lookalike.i18n import N_
from search import UrlFetchError, fetch_image
from web.problems import InvalidRequestError, ProblemError
from web.render import Urls, search_out
from web.schemas import (
    PRICE_PATTERN,
    FeedbackIn,
    FeedbackOut,
    SearchByUrlIn,
    SearchOut,
    SearchParams,
)

if TYPE_CHECKING:
    from search import SearchEngine
    from web.context import WebContext

SHARE_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
# The multipart form's fields as they are sent (strings) and checked: each must match its
# pattern whole, or be empty (= left out, as an HTML form sends an unset field). The OpenAPI
# document shows the same patterns, so every value it allows is accepted and no other.
_FORM_PATTERNS = {
    "k": "[1-9]|[1-4][0-9]|50",
    "category": "[^\\x00-\\x1f]{1,64}",
    "max_price": PRICE_PATTERN.removeprefix("^").removesuffix("$"),
    "metric": "cosine|euclidean|inner_product",
    "cheaper_than": "[^\\x00-\\x1f]{1,64}",
    "colour": "[^\\x00-\\x1f]{1,40}",
    "all_categories": "true|false",
}
_FORM_FIELDS = tuple(_FORM_PATTERNS)
# Part types a browser or client may give a photo; the bytes are checked by the engine anyway.
_PHOTO_TYPES = ("image/", "application/octet-stream")

_SEARCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["photo"],
                    "properties": {
                        "photo": {"type": "string", "format": "binary"},
                        **{
                            name: {"type": "string", "pattern": f"^({pattern})?$"}
                            for name, pattern in _FORM_PATTERNS.items()
                        },
                    },
                }
            },
            "application/json": {"schema": SearchByUrlIn.model_json_schema()},
        },
    }
}


def _invalid(error: ValidationError) -> ProblemError:
    return InvalidRequestError(error.errors(), prefix=())


async def _read_form(request: Request) -> tuple[bytes, SearchParams]:
    async with request.form(max_files=1, max_fields=len(_FORM_FIELDS)) as form:
        photo = form.get("photo")
        if not isinstance(photo, UploadFile):
            raise ProblemError(
                422, N_("send the photo as the multipart field 'photo'"), kind="invalid-request"
            )
        part_type = (photo.content_type or "application/octet-stream").lower()
        if not part_type.startswith(_PHOTO_TYPES):
            raise ProblemError(
                415,
                N_("the photo was sent as {type}; send a JPEG, PNG or WebP image"),
                kind="unsupported-media-type",
                values={"type": part_type[:60]},
            )
        data = await photo.read()
        given = {name: value for name in _FORM_FIELDS if isinstance(value := form.get(name), str)}
    for name, value in given.items():
        if value and not re.fullmatch(_FORM_PATTERNS[name], value):
            raise ProblemError(
                422,
                N_("{name}: {value} is not a valid value"),
                kind="invalid-request",
                values={"name": name, "value": repr(value[:40])},
            )
    values = {name: value for name, value in given.items() if value}
    try:
        params = SearchParams.model_validate(values)
    except ValidationError as error:
        raise _invalid(error) from None
    return data, params


async def _read_json(request: Request) -> SearchByUrlIn:
    try:
        return SearchByUrlIn.model_validate_json(await request.body())
    except ValidationError as error:
        raise _invalid(error) from None


def router(engine: SearchEngine, context: WebContext) -> APIRouter:
    routes = APIRouter(prefix="/api/v1", tags=["search"])

    @routes.post(
        "/search",
        response_model=SearchOut,
        summary="Search by photo: an upload (multipart) or an image URL (JSON)",
        openapi_extra=_SEARCH_BODY,
    )
    async def search(request: Request) -> SearchOut:
        started = time.perf_counter()
        # Counted before anything of the body is read: a client past its limit costs no upload.
        user_ref = context.user_ref(request)
        await context.limit_search(user_ref)
        content_type = request.headers.get("content-type", "").lower()
        data: bytes | None = None
        image_url: str | None = None
        params: SearchParams
        if content_type.startswith("multipart/form-data"):
            data, params = await _read_form(request)
            source = "upload"
        elif content_type.startswith("application/json"):
            params = await _read_json(request)
            image_url, source = str(params.image_url), "url"
        else:
            raise ProblemError(
                415,
                N_(
                    "send the photo as multipart/form-data (field 'photo') or a JSON body "
                    "with image_url"
                ),
                kind="unsupported-media-type",
            )
        max_price = params.max_price
        if params.cheaper_than:
            max_price = await context.price_below(params.cheaper_than)
        if data is None:
            assert image_url is not None
            data = await _fetch(image_url, context)
        if len(data) > engine.config.max_image_bytes:
            raise ProblemError(
                413,
                N_("the photo is larger than {megabytes} MB"),
                kind="too-large",
                values={"megabytes": context.max_image_megabytes()},
            )
        result = await context.search_photo(data, params, max_price, user_ref, source)
        total_ms = (time.perf_counter() - started) * 1000
        context.metrics.search_seconds.observe(total_ms / 1000)
        return search_out(
            result,
            Urls.for_request(request, context.config.public_url),
            requested_category=params.category,
            total_ms=total_ms,
        )

    @routes.get(
        "/searches/{share_token}",
        response_model=SearchOut,
        summary="A shared result set, with today's product data",
    )
    async def shared_search(request: Request, share_token: str) -> SearchOut:
        if not SHARE_TOKEN.match(share_token):
            raise ProblemError(404, N_("there is no such shared search"), kind="not-found")
        lookup = functools.partial(engine.searcher.get_search, share_token=share_token)
        result = await engine.run(lookup)
        if result is None:
            # Never made, or its search passed the retention period: the two cannot be told
            # apart (tokens are random and nothing of a purged search is kept), so no "expired".
            days = engine.history.retention_days
            raise ProblemError(
                404,
                N_(
                    "there are no such shared results (searches are kept for {days} days; "
                    "an older link no longer works)"
                ),
                kind="not-found",
                values={"days": days},
            )
        return search_out(result, Urls.for_request(request, context.config.public_url))

    @routes.post(
        "/searches/{share_token}/feedback",
        response_model=FeedbackOut,
        summary="Thumbs up (1) or down (-1) on a result set; a second vote replaces the first",
        description="Addressed by the result set's share_token (as the search answered it), "
        "not its sequential search_id, so that only who saw the results can vote on them.",
    )
    async def feedback(
        request: Request, share_token: str, body: Annotated[FeedbackIn, Body()]
    ) -> FeedbackOut:
        user_ref = context.user_ref(request)
        await context.limit_votes(user_ref)
        search_id = None
        if SHARE_TOKEN.match(share_token):
            record = functools.partial(
                engine.history.record_shared_feedback,
                share_token,
                user_ref=user_ref,
                vote=body.vote,
            )
            search_id = await engine.run(record)
        if search_id is None:
            raise ProblemError(404, N_("there are no such results to vote on"), kind="not-found")
        return FeedbackOut(search_id=search_id, vote=body.vote, recorded=True)

    return routes


async def _fetch(url: str, context: WebContext) -> bytes:
    try:
        return await fetch_image(
            url,
            max_bytes=context.max_image_bytes,
            timeout=context.config.url_fetch_timeout_seconds,
            allow_private=context.config.url_fetch_allow_private,
        )
    except UrlFetchError as error:
        raise ProblemError(
            422,
            N_("the image URL could not be used: {reason}"),
            kind="image-url",
            values={"reason": error},
        ) from None
