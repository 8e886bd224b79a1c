"""Public catalogue reads: a product, its lookalikes, the categories. Handlers parse, make
one engine call, render."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Path, Query, Request

from lookalike.i18n import N_
from search import CatalogError, Requester
from web.context import SOURCE, catalog_problem
from web.problems import ProblemError
from web.render import Urls, product_out, search_out
from web.schemas import CategoriesOut, ProductOut, SimilarOut

if TYPE_CHECKING:
    from search import ProductRecord, SearchEngine, SearchResult
    from web.context import WebContext

Sku = Annotated[str, Path(min_length=1, max_length=64)]


def router(engine: SearchEngine, context: WebContext) -> APIRouter:
    routes = APIRouter(prefix="/api/v1", tags=["catalogue"])

    @routes.get(
        "/products/{sku}", response_model=ProductOut, summary="A product (404 once removed)"
    )
    async def get_product(request: Request, sku: Sku) -> ProductOut:
        product = await engine.run(engine.catalog.get, sku)
        # Out of stock is shown (in_stock: false); removed products are gone for customers.
        if product is None or product.removed:
            raise ProblemError(
                404, N_("there is no product {sku}"), kind="not-found", values={"sku": repr(sku)}
            )
        return product_out(product, Urls.for_request(request, context.config.public_url))

    @routes.get(
        "/products/{sku}/similar",
        response_model=SimilarOut,
        summary="The products that look most like this one (any category)",
    )
    async def similar(
        request: Request,
        sku: Sku,
        k: Annotated[int | None, Query(ge=1, le=50)] = None,
    ) -> SimilarOut:
        who = Requester(context.user_ref(request), SOURCE)
        await context.limit_search(who.user_ref)  # a search (ranked and logged) like any other
        try:
            product, result = await engine.run(_similar_to_sku, engine, sku, who, k)
        except CatalogError as error:
            raise catalog_problem(error, sku) from None
        urls = Urls.for_request(request, context.config.public_url)
        return SimilarOut(product=product_out(product, urls), search=search_out(result, urls))

    @routes.get(
        "/categories",
        response_model=CategoriesOut,
        summary="The categories of the products on sale",
    )
    async def categories() -> CategoriesOut:
        return CategoriesOut(categories=await engine.run(engine.catalog.categories))

    return routes


def _similar_to_sku(
    engine: SearchEngine, sku: str, who: Requester, k: int | None
) -> tuple[ProductRecord, SearchResult]:
    """One blocking engine step: the SKU's product and its lookalikes."""
    product = engine.catalog.get(sku)
    if product is None or product.removed:
        raise CatalogError(f"there is no product {sku!r}")
    return engine.searcher.similar_to_product(product.id, who, k=k)
