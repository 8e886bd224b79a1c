"""Catalogue writes for the shop's back office, behind an API key (`Authorization: Bearer`):
create a product with a photo, add a photo, change its fields, stock in/out, remove/restore.

Every write attempt is audited (engine.history.audit). audit_log.user_id holds staff's
Telegram ids, which are positive: a web write is logged as user_id = -key_id (negative, so it
never collides with a Telegram id), and an attempt without a valid key as user_id = 0; the
key's id and name are in details either way."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Path, Request, Security
from fastapi.security import HTTPBearer
from starlette.datastructures import UploadFile

from lookalike.i18n import N_
from search import (
    CatalogError,
    FieldError,
    InvalidImageError,
    MediaStoreError,
    ProductFields,
    clean_colour,
    clean_product_fields,
    correct_colour,
)
from web.context import TooManyRefusalsError, catalog_problem
from web.problems import ProblemError
from web.render import Urls, product_out
from web.schemas import ProductUpdateIn, StockIn, WriteOut

if TYPE_CHECKING:
    from db import ApiKeyRecord
    from search import ProductRecord, SearchEngine
    from web.context import WebContext

T = TypeVar("T")
Sku = Annotated[str, Path(min_length=1, max_length=64)]
# Documents the scheme in OpenAPI (the lock in /docs); the header is checked by KeyChecker,
# which gives a clearer answer than the framework's default.
_BEARER = HTTPBearer(auto_error=False, description="an API key from `lookalike api-key create`")
_PRODUCT_FORM = ("sku", "name", "price", "currency", "url", "category")


def _multipart_body(*, with_fields: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {"photo": {"type": "string", "format": "binary"}}
    required = ["photo"]
    if with_fields:
        properties.update({name: {"type": "string"} for name in _PRODUCT_FORM})
        required += ["sku", "name"]
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": required, "properties": properties}
                }
            },
        }
    }


async def _read_photo_form(request: Request) -> tuple[bytes, dict[str, str]]:
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise ProblemError(
            415,
            N_("send the photo as multipart/form-data (field 'photo')"),
            kind="unsupported-media-type",
        )
    async with request.form(max_files=1, max_fields=len(_PRODUCT_FORM)) as form:
        photo = form.get("photo")
        if not isinstance(photo, UploadFile):
            raise ProblemError(
                422, N_("send the photo as the multipart field 'photo'"), kind="invalid-request"
            )
        fields = {name: value for name in _PRODUCT_FORM if isinstance(value := form.get(name), str)}
        return await photo.read(), fields


def _clean(**values: Any) -> ProductFields:
    try:
        return clean_product_fields(**values)
    except FieldError as error:
        raise ProblemError(422, str(error), kind="invalid-field") from None


def router(engine: SearchEngine, context: WebContext) -> APIRouter:
    routes = APIRouter(
        prefix="/api/v1", tags=["catalogue writes (API key)"], dependencies=[Security(_BEARER)]
    )

    async def authorise(request: Request, action: str, target: str) -> ApiKeyRecord:
        """The request's key, before anything of the body is read; refusals are audited."""
        try:
            return await context.authorise_write(
                request.headers.get("authorization"), context.user_ref(request)
            )
        except ProblemError as refusal:
            if not isinstance(refusal, TooManyRefusalsError):  # past the limit: not one by one
                await _audit(engine, 0, action, "refused", target, {"reason": str(refusal)})
            raise

    async def audited(
        key: ApiKeyRecord, action: str, target: str, work: Callable[[], Awaitable[T]]
    ) -> T:
        """Do the write and audit what happened; engine errors become problems."""
        who = {"api_key_id": key.id, "api_key_name": key.name}
        try:
            done = await work()
        except ProblemError as problem:
            reason = {**who, "reason": str(problem)}
            await _audit(engine, -key.id, action, "failed", target, reason)
            raise
        except (CatalogError, InvalidImageError, MediaStoreError) as error:
            reason = {**who, "reason": str(error)}
            await _audit(engine, -key.id, action, "failed", target, reason)
            raise _engine_problem(error, target) from None
        await _audit(engine, -key.id, action, "ok", target, who)
        context.metrics.writes.labels(action=action).inc()
        return done

    def urls(request: Request) -> Urls:
        return Urls.for_request(request, context.config.public_url)

    @routes.post(
        "/products",
        status_code=201,
        response_model=WriteOut,
        summary="Create a product with its photo",
        openapi_extra=_multipart_body(with_fields=True),
    )
    async def create_product(request: Request) -> WriteOut:
        key = await authorise(request, "web_add", "")
        data, form = await _read_photo_form(request)
        sku = form.get("sku", "")

        async def work() -> WriteOut:
            fields = _clean(
                sku=sku,
                name=form.get("name", ""),
                price=form.get("price"),
                currency=form.get("currency") or "EUR",
                url=form.get("url"),
                category=form.get("category"),
            )
            if await engine.run(engine.catalog.get, fields.sku) is not None:
                raise ProblemError(
                    409,
                    N_("product {sku} already exists"),
                    kind="conflict",
                    values={"sku": fields.sku},
                )
            return _outcome_out(await engine.add_photo(fields, data), urls(request))

        return await audited(key, "web_add", sku[:64], work)

    @routes.post(
        "/products/{sku}/photos",
        status_code=201,
        response_model=WriteOut,
        summary="Add a photo to a product",
        openapi_extra=_multipart_body(with_fields=False),
    )
    async def add_photo(request: Request, sku: Sku) -> WriteOut:
        key = await authorise(request, "web_add_photo", sku)
        data, _ = await _read_photo_form(request)

        async def work() -> WriteOut:
            product = await engine.run(engine.catalog.require, sku)
            return _outcome_out(await engine.add_photo(product.fields, data), urls(request))

        return await audited(key, "web_add_photo", sku, work)

    @routes.patch("/products/{sku}", response_model=WriteOut, summary="Change a product's fields")
    async def update_product(
        request: Request, sku: Sku, body: Annotated[ProductUpdateIn, Body()]
    ) -> WriteOut:
        key = await authorise(request, "web_update", sku)

        async def work() -> WriteOut:
            record, changed = await engine.run(_update, engine, sku, body)
            return WriteOut(product=product_out(record, urls(request)), changed=changed)

        return await audited(key, "web_update", sku, work)

    @routes.put("/products/{sku}/stock", response_model=WriteOut, summary="In or out of stock")
    async def set_stock(request: Request, sku: Sku, body: Annotated[StockIn, Body()]) -> WriteOut:
        action = "web_stock_in" if body.in_stock else "web_stock_out"
        key = await authorise(request, action, sku)

        async def work() -> WriteOut:
            stock = functools.partial(engine.catalog.set_stock, sku, in_stock=body.in_stock)
            return WriteOut(product=product_out(await engine.run(stock), urls(request)))

        return await audited(key, action, sku, work)

    @routes.delete("/products/{sku}", response_model=WriteOut, summary="Remove (hide, restorable)")
    async def remove_product(request: Request, sku: Sku) -> WriteOut:
        key = await authorise(request, "web_remove", sku)

        async def work() -> WriteOut:
            record = await engine.run(engine.catalog.remove, sku)
            return WriteOut(product=product_out(record, urls(request)))

        return await audited(key, "web_remove", sku, work)

    @routes.post(
        "/products/{sku}/restore", response_model=WriteOut, summary="Show a removed product again"
    )
    async def restore_product(request: Request, sku: Sku) -> WriteOut:
        key = await authorise(request, "web_restore", sku)

        async def work() -> WriteOut:
            record = await engine.run(engine.catalog.restore, sku)
            return WriteOut(product=product_out(record, urls(request)))

        return await audited(key, "web_restore", sku, work)

    return routes


def _update(engine: SearchEngine, sku: str, change: ProductUpdateIn) -> tuple[ProductRecord, bool]:
    """One blocking engine step: the product's fields with `change` applied, validated."""
    current = engine.catalog.require(sku)
    given = change.model_dump(exclude_unset=True)
    colour_changed = False
    if "colour" in given:  # checked before anything changes
        try:
            colour = clean_colour(given["colour"])
        except FieldError as error:
            raise ProblemError(422, str(error), kind="invalid-field") from None
        colour_changed = colour != current.corrected_colour
    fields = _clean(
        sku=current.sku,
        name=given.get("name", current.name),
        # A field given as null is cleared (url, category); one left out stays as it is.
        price=given.get("price", current.price),
        currency=given.get("currency") or current.currency,
        url=given.get("url", current.url),
        category=given.get("category", current.category),
    )
    if colour_changed:
        correct_colour(engine, sku, colour)
    record, changed = engine.catalog.update(fields)
    return record, changed or colour_changed


def _engine_problem(error: Exception, sku: str) -> ProblemError:
    if isinstance(error, CatalogError):
        return catalog_problem(error, sku)
    if isinstance(error, InvalidImageError):
        return ProblemError(422, str(error), kind="invalid-image")
    return ProblemError(503, str(error), kind="storage")


def _outcome_out(outcome: Any, urls: Urls) -> WriteOut:
    warnings = [
        f"looks almost the same as {item.product.sku} ({item.similarity:.0f}% similar)"
        for item in outcome.near_duplicates
    ]
    if not outcome.created_image:
        warnings.append("this exact photo was already this product's")
    return WriteOut(product=product_out(outcome.product, urls), warnings=warnings)


async def _audit(
    engine: SearchEngine,
    user_id: int,
    action: str,
    outcome: str,
    target: str,
    details: dict[str, Any],
) -> None:
    await engine.run(
        engine.history.audit,
        user_id=user_id,
        action=action,
        outcome=outcome,
        target=target or None,
        details=details,
    )
