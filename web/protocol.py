"""HTTP as integrators expect it, for every route at once: HEAD wherever GET is (uptime
checks and CDNs send `HEAD /healthz`), `Allow` naming every method a path has, security
headers (nosniff, a Content-Security-Policy per kind of answer), and a refused CORS preflight
answered as problem+json like every other error.

Why a pure ASGI middleware and not FastAPI routes: HEAD is the same answer as GET without
its body, for every GET route; written once here, no route can forget it, and the OpenAPI
document stays one operation per route."""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.problems import problem_response

# The API's answers (JSON, images, metrics) are never a document to render or frame.
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
# Swagger UI (/docs): its own inline bootstrap script and inline styles, all assets local.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def page_policy(html: str) -> str:
    """The search page's policy: scripts from this server plus the page's own inline scripts
    by hash (computed from the file, so editing it cannot break the page), photos previewed
    from blob: URLs, every request to this server only."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self'; "
        "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'self'"
    ).replace("  ", " ")


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route answers at this path (HEAD with GET), asked of the router
    itself method by method (routes of included routers are nested, several per path)."""
    # A clean scope: the one a request went through carries the router's state of its match.
    probe = {"type": "http", "path": scope["path"], "root_path": scope.get("root_path", "")}
    methods = {
        method
        for method in _METHODS
        if any(
            route.matches({**probe, "method": method})[0] == Match.FULL
            for route in app.router.routes
        )
    }
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


class ProtocolMiddleware:
    """HEAD answered as GET without the body (the headers, Content-Length included, kept);
    nosniff and a Content-Security-Policy on every answer that has none yet."""

    def __init__(self, app: ASGIApp, *, routes_of: FastAPI, policies: dict[str, str]) -> None:
        self.app = app
        self.routes_of = routes_of  # whose routes a 405's Allow names
        self.policies = policies  # path -> policy; any other path: API_POLICY

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        if head:
            scope = {**scope, "method": "GET", "lookalike.head": True}
        policy = self.policies.get(scope["path"], API_POLICY)
        if scope["path"].startswith("/docs"):
            policy = DOCS_POLICY

        async def send_headed(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                if message["status"] == 405:  # the router names only the first route's methods
                    allow = ", ".join(allowed_methods(self.routes_of, scope)).encode()
                    raw = [(name, value) for name, value in raw if name.lower() != b"allow"]
                    raw.append((b"allow", allow))
                raw.append((b"x-content-type-options", b"nosniff"))
                if "content-security-policy" not in Headers(raw=raw):
                    raw.append((b"content-security-policy", policy.encode()))
                message = {**message, "headers": raw}
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app(scope, receive, send_headed)


class ProblemCorsMiddleware(CORSMiddleware):
    """CORS as Starlette does it, but a refused preflight is problem+json (it is text/plain
    there), saying which part of the request was not allowed."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode(errors="replace").strip() or "not allowed"
        origin = request_headers.get("origin", "")
        detail = f"cross-origin request from {origin[:100]} refused: {refused}"
        problem = problem_response(response.status_code, detail, kind="cors-refused")
        for name in ("vary", "access-control-allow-methods", "access-control-max-age"):
            if name in response.headers:
                problem.headers[name] = response.headers[name]
        return problem
