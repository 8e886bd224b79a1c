"""What every handler shares: the engine, the web config, metrics, limits and key checks,
and the few steps several handlers take (who the client is, the rate limit, one photo search
with its errors translated to problems)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from starlette.requests import Request

from lookalike.i18n import N_
from lookalike.limits import SEARCH, RateLimiter
from lookalike.limits import user_ref as reference_of
from search import (
    CatalogError,
    FieldError,
    InvalidImageError,
    Requester,
    SearchQuery,
    clean_colour,
)
from web.config import WebConfig
from web.keys import KeyChecker
from web.limits import client_address
from web.metrics import WebMetrics
from web.problems import ProblemError
from web.schemas import SearchParams

if TYPE_CHECKING:
    from db import ApiKeyRecord
    from search import SearchEngine, SearchResult

SOURCE = "web"  # Requester.source of every search made here
NO_PRODUCT = N_("there is no product {sku}")
TOO_MANY_SEARCHES = N_("too many searches from your address; try again in {wait} s")
TOO_MANY_VOTES = N_("too many votes from your address; try again in {wait} s")
TOO_MANY_REFUSALS = N_("too many refused attempts from your address; try again in {wait} s")
TOO_MANY_WRITES = N_("too many catalogue changes with this key; try again in {wait} s")
# The rate limiter's buckets besides SEARCH (per address): votes per address, catalogue
# changes per API key, refused key checks per address.
VOTE, WRITE, REFUSED = "web-vote", "web-key", "web-refused"


def rate_limited(kind: type[ProblemError], why: str, wait: int) -> ProblemError:
    """429 with Retry-After: `why` (a marked sentence with {wait}), and when to try again."""
    return kind(
        429, why, kind="rate-limited", headers={"Retry-After": str(wait)}, values={"wait": wait}
    )


class TooManyRefusalsError(ProblemError):
    """Refused key checks past the address's limit: answered, no longer audited one by one."""


@dataclass
class WebContext:
    engine: SearchEngine
    config: WebConfig
    metrics: WebMetrics
    limits: RateLimiter  # buckets: SEARCH, VOTE, WRITE, REFUSED
    keys: KeyChecker
    # /readyz: "loading" until the model is loaded and warmed up, then "loaded" (or "failed",
    # or "stopping" once the server shuts down).
    model_state: str = "loading"

    @property
    def max_image_bytes(self) -> int:
        return int(self.engine.config.max_image_bytes)

    def max_image_megabytes(self) -> str:
        return f"{self.max_image_bytes / (1024 * 1024):.0f}"

    def user_ref(self, request: Request) -> str:
        address = client_address(request, self.config.trusted_proxies)
        assert self.config.user_ref_key is not None, "create_app sets the key"
        return reference_of(self.config.user_ref_key, address, source=SOURCE)

    async def _wait(self, bucket: str, who: str) -> int | None:
        """None: go ahead (counted); else whole seconds to wait (for Retry-After)."""
        wait = await self.engine.run(self.limits.try_acquire, bucket, who)
        return None if wait is None else max(1, math.ceil(wait))

    async def limit_search(self, user_ref: str) -> None:
        wait = await self._wait(SEARCH, user_ref)
        if wait is not None:
            raise rate_limited(ProblemError, TOO_MANY_SEARCHES, wait)

    async def limit_votes(self, user_ref: str) -> None:
        """Votes from one address: as many a minute as searches (a vote follows a search)."""
        wait = await self._wait(VOTE, user_ref)
        if wait is not None:
            raise rate_limited(ProblemError, TOO_MANY_VOTES, wait)

    async def authorise_write(self, authorization: str | None, user_ref: str) -> ApiKeyRecord:
        """The key of a write request; 401 without a valid one, 429 (Retry-After) past the
        key's write limit or past the address's limit of refused attempts."""
        try:
            key = await self.keys.require(authorization)
        except ProblemError:
            wait = await self._wait(REFUSED, user_ref)
            if wait is not None:
                raise rate_limited(TooManyRefusalsError, TOO_MANY_REFUSALS, wait) from None
            raise
        wait = await self._wait(WRITE, str(key.id))
        if wait is not None:
            raise rate_limited(ProblemError, TOO_MANY_WRITES, wait)
        return key

    async def price_below(self, sku: str) -> Decimal:
        """The max_price of "cheaper than SKU": that product's price minus one cent."""
        product = await self.engine.run(self.engine.catalog.get, sku)
        if product is None or product.removed:
            raise ProblemError(404, NO_PRODUCT, kind="not-found", values={"sku": repr(sku)})
        if product.price is None:
            raise ProblemError(
                422,
                N_("product {sku} has no price to compare with"),
                kind="no-price",
                values={"sku": sku},
            )
        return product.price - Decimal("0.01")

    async def search_photo(
        self,
        data: bytes,
        params: SearchParams,
        max_price: Decimal | None,
        user_ref: str,
        source: str,
    ) -> SearchResult:
        query = SearchQuery(
            k=params.k,
            category=params.category,
            max_price=max_price,
            metric=params.metric,
            infer_category=False if params.all_categories else None,
            colour=_colour(params.colour),
        )
        try:
            result = await self.engine.search_photo(data, query, Requester(user_ref, SOURCE))
        except InvalidImageError as error:
            self.metrics.searches.labels(source=source, outcome="invalid-image").inc()
            raise ProblemError(422, str(error), kind="invalid-image") from None
        self.metrics.searches.labels(source=source, outcome="ok").inc()
        return result


def catalog_problem(error: CatalogError, sku: str | None = None) -> ProblemError:
    """A catalogue request that cannot be done: 404 when it names something unknown. A product
    the request named (`sku`) that is not there is said in the request's language; any other
    reason is the engine's (English)."""
    message = str(error)
    if sku and message.startswith(("there is no product", "no product")):
        return ProblemError(404, NO_PRODUCT, kind="not-found", values={"sku": repr(sku)})
    status = 404 if message.startswith(("there is no", "no product", "unknown")) else 409
    return ProblemError(status, message, kind="not-found" if status == 404 else "conflict")


def _colour(text: str | None) -> str | None:
    """The `colour` parameter -> one of the colour names; 422 for a word that is none."""
    try:
        return clean_colour(text)
    except FieldError as error:
        raise ProblemError(422, str(error), kind="invalid-field") from None
