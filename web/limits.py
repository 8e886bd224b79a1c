"""Limits on what a client may send: the request body size (a pure ASGI middleware, so an
oversized upload is cut off while it streams in, with or without a Content-Length), and who
the client is (its address, behind trusted proxies). How often it may ask is
lookalike.limits' (one rate limiter for both doors, in the database)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike.i18n import N_, from_accept_language, translator
from web.problems import problem_response

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
