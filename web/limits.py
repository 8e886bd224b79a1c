"""Limits on what a client may send and how often: the request body size (a pure ASGI
middleware, so an oversized upload is cut off while it streams in, with or without a
Content-Length), who the client is (a pseudonymous reference of its address), and the
per-address search and per-key write rate limits with Retry-After.

The rate limits count in the database (db.RateLimits, the same table the bot's limiter
uses), so several `lookalike serve` instances share them."""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db import RateLimits as SharedRateLimits
from lookalike.i18n import N_, from_accept_language, translator
from web.problems import problem_response

if TYPE_CHECKING:
    from search import SearchEngine

WINDOW = timedelta(minutes=1)
# Multipart framing and form fields around the photo itself.
BODY_OVERHEAD_BYTES = 64 * 1024


TOO_LARGE = N_("the request is larger than {megabytes} MB")


class BodyTooLargeError(Exception):
    pass


class BodyLimitMiddleware:
    """Answers 413 (problem+json) to any request whose body passes `max_bytes`: at once when
    its Content-Length says so, else as soon as the streamed body goes past it."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, on_refused: Callable[[], None]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_refused = on_refused

    def _refusal(self, scope: Scope) -> ASGIApp:
        self.on_refused()
        t = translator(from_accept_language(Headers(scope=scope).get("accept-language")))
        megabytes = t.number(round(self.max_bytes / (1024 * 1024)))
        return problem_response(
            413,
            t(TOO_LARGE, megabytes=megabytes),
            kind="too-large",
            headers={"Content-Language": t.language},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refusal(scope)(scope, receive, send)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:
            if started:
                raise
            await self._refusal(scope)(scope, receive, send)


def client_address(request: Request, trusted_proxies: tuple[str, ...]) -> str:
    """The client's IP address: the socket's peer, or (behind a trusted proxy) the last
    address X-Forwarded-For names that is not itself a trusted proxy."""
    peer = request.client.host if request.client is not None else "unknown"
    if peer not in trusted_proxies:
        return peer
    forwarded = request.headers.get("x-forwarded-for", "")
    for address in reversed([part.strip() for part in forwarded.split(",") if part.strip()]):
        if address not in trusted_proxies:
            return address
    return peer


def user_ref_of(address: str, key: bytes) -> str:
    """A pseudonymous reference of a client address (what searches are logged under): an HMAC,
    so the address cannot be recovered by trying them all without the key."""
    return "web:" + hmac.new(key, address.encode(), hashlib.sha256).hexdigest()[:40]


class RateLimits:
    def __init__(
        self,
        engine: SearchEngine,
        sessions: sessionmaker[Session],
        *,
        searches_per_minute: int,
        writes_per_minute: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._slots = SharedRateLimits(sessions)
        self.searches_per_minute = searches_per_minute
        self.writes_per_minute = writes_per_minute
        self._clock = clock

    def _take(self, user_ref: str, limit: int) -> float | None:
        return self._slots.take_slot(user_ref, now=self._clock(), window=WINDOW, limit=limit)

    async def search_wait(self, user_ref: str) -> int | None:
        """None: go ahead (counted); else whole seconds to wait (for Retry-After)."""
        wait = await self._engine.run(self._take, user_ref, self.searches_per_minute)
        return None if wait is None else max(1, math.ceil(wait))

    async def vote_wait(self, user_ref: str) -> int | None:
        wait = await self._engine.run(self._take, f"web-vote:{user_ref}", self.searches_per_minute)
        return None if wait is None else max(1, math.ceil(wait))

    async def write_wait(self, key_id: int) -> int | None:
        wait = await self._engine.run(self._take, f"web-key:{key_id}", self.writes_per_minute)
        return None if wait is None else max(1, math.ceil(wait))

    async def refused_wait(self, user_ref: str) -> int | None:
        """Refused key checks from one address, limited like writes: a flood of bad keys
        neither guesses on unchecked nor fills the audit log."""
        wait = await self._engine.run(self._take, f"web-refused:{user_ref}", self.writes_per_minute)
        return None if wait is None else max(1, math.ceil(wait))
