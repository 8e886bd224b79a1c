"""bot.urlfetch.fetch_image against a real HTTP server on a loopback address."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bot import urlfetch
from bot.urlfetch import UrlFetchError, address_allowed, fetch_image

PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108020000009077"
    "53de0000000c4944415408d763f8ffff3f0005fe02fea7356f0e0000000049454e44ae426082"
)


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str | None = "image/png"
    headers: dict[str, str] = field(default_factory=dict)
    content_length: bool = True  # False: no Content-Length, the body ends when the socket closes
    delay: float = 0.0


class LocalHttpServer:
    """A tiny HTTP server on 127.0.0.1 (or another loopback address) in a thread.

    ``routes`` maps a path to a Route; ``hits`` lists every path requested, in order.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[str] = []
        self.host_headers: list[str] = []
        self._stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection, close-delimited bodies

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.hits.append(self.path)
                outer.host_headers.append(self.headers.get("Host", ""))
                route = outer.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                if route.delay:
                    outer._stop.wait(route.delay)
                try:
                    self.send_response(route.status)
                    if route.content_type is not None:
                        self.send_header("Content-Type", route.content_type)
                    if route.content_length:
                        self.send_header("Content-Length", str(len(route.body)))
                    for name, value in route.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(route.body)
                except OSError:
                    pass  # the client gave up

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.host, self.port = host, int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str, *, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def start(self) -> LocalHttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def server() -> Iterator[LocalHttpServer]:
    http = LocalHttpServer().start()
    try:
        yield http
    finally:
        http.stop()


async def fetch(url: str, **options: Any) -> bytes:
    values: dict[str, Any] = {"max_bytes": 1024 * 1024, "timeout": 5.0, "allow_private": True}
    values.update(options)
    return await fetch_image(url, **values)


async def test_fetches_an_image(server: LocalHttpServer) -> None:
    server.routes["/a.png"] = Route(body=PNG_1PX)
    assert await fetch(server.url("/a.png")) == PNG_1PX
    assert server.hits == ["/a.png"]
    assert server.host_headers == [f"127.0.0.1:{server.port}"]


async def test_keeps_the_host_name_in_the_host_header(server: LocalHttpServer) -> None:
    """Connecting to the checked address must not lose the name the URL gave."""
    server.routes["/a.png"] = Route(body=PNG_1PX)
    assert await fetch(server.url("/a.png", host="localhost")) == PNG_1PX
    assert server.host_headers == [f"localhost:{server.port}"]


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "0.0.0.0",
        "10.1.2.3",
        "169.254.169.254",
        "[::ffff:127.0.0.1]",
        "2130706433",  # 127.0.0.1 written as one number
        "192.168.0.1",
        "100.64.0.1",  # shared address space (carrier-grade NAT)
        "224.0.0.1",  # multicast
    ],
)
async def test_refuses_private_addresses(server: LocalHttpServer, host: str) -> None:
    server.routes["/a.png"] = Route(body=PNG_1PX)
    started = time.monotonic()
    with pytest.raises(UrlFetchError, match="private or local network address"):
        await fetch(server.url("/a.png", host=host), allow_private=False)
    assert time.monotonic() - started < 2.0  # refused before trying to connect
    assert server.hits == []


def test_address_policy() -> None:
    def allowed(text: str) -> bool:
        return address_allowed(ipaddress.ip_address(text))

    assert allowed("93.184.216.34")
    assert allowed("2606:2800:220:1:248:1893:25c8:1946")
    for text in (
        "127.0.0.1",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "255.255.255.255",
        "240.0.0.1",
        "100.64.0.1",
        "224.0.0.251",
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::1",  # 6to4 around 127.0.0.1
        "2001:db8::1",
    ):
        assert not allowed(text), text


async def test_refuses_non_image_content_type(server: LocalHttpServer) -> None:
    server.routes["/page"] = Route(body=b"<html></html>", content_type="text/html; charset=utf-8")
    with pytest.raises(UrlFetchError, match=r"not an image \(text/html\)"):
        await fetch(server.url("/page"))
    server.routes["/none"] = Route(body=PNG_1PX, content_type=None)
    with pytest.raises(UrlFetchError, match="not an image"):
        await fetch(server.url("/none"))


async def test_refuses_oversize_by_content_length(server: LocalHttpServer) -> None:
    server.routes["/big.png"] = Route(body=b"\x89PNG" + b"\0" * 5000)
    with pytest.raises(UrlFetchError, match="larger than 1000 bytes"):
        await fetch(server.url("/big.png"), max_bytes=1000)


async def test_refuses_oversize_while_streaming(server: LocalHttpServer) -> None:
    server.routes["/big.png"] = Route(body=b"\x89PNG" + b"\0" * 300_000, content_length=False)
    with pytest.raises(UrlFetchError, match="larger than"):
        await fetch(server.url("/big.png"), max_bytes=100_000)
    # Exactly at the limit is fine.
    server.routes["/ok.png"] = Route(body=PNG_1PX, content_length=False)
    assert await fetch(server.url("/ok.png"), max_bytes=len(PNG_1PX)) == PNG_1PX


async def test_times_out(server: LocalHttpServer) -> None:
    server.routes["/slow.png"] = Route(body=PNG_1PX, delay=3.0)
    started = time.monotonic()
    with pytest.raises(UrlFetchError, match=r"within 0\.5 s"):
        await fetch(server.url("/slow.png"), timeout=0.5)
    assert time.monotonic() - started < 2.0


async def test_follows_redirects_and_checks_each_hop(server: LocalHttpServer) -> None:
    server.routes["/a.png"] = Route(body=PNG_1PX)
    server.routes["/r1"] = Route(status=302, headers={"Location": "/r2"}, content_type=None)
    server.routes["/r2"] = Route(status=301, headers={"Location": "r3"}, content_type=None)
    server.routes["/r3"] = Route(
        status=307, headers={"Location": server.url("/a.png")}, content_type=None
    )
    assert await fetch(server.url("/r1")) == PNG_1PX
    assert server.hits == ["/r1", "/r2", "/r3", "/a.png"]


async def test_too_many_redirects(server: LocalHttpServer) -> None:
    for n in range(1, 6):
        server.routes[f"/r{n}"] = Route(
            status=302, headers={"Location": f"/r{n + 1}"}, content_type=None
        )
    with pytest.raises(UrlFetchError, match="redirects more than 3 times"):
        await fetch(server.url("/r1"))
    assert server.hits == ["/r1", "/r2", "/r3", "/r4"]


async def test_redirect_to_a_private_address_is_refused(
    server: LocalHttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first hop is allowed (the policy lets 127.0.0.1 through for this test); the
    redirect to another loopback address, where a server listens, never reaches it."""
    inner = LocalHttpServer("127.0.0.2").start()
    try:
        inner.routes["/secret.png"] = Route(body=PNG_1PX)
        server.routes["/go"] = Route(
            status=302, headers={"Location": inner.url("/secret.png")}, content_type=None
        )
        server.routes["/meta"] = Route(
            status=302,
            headers={"Location": "http://169.254.169.254/latest/meta-data/"},
            content_type=None,
        )
        policy = urlfetch.address_allowed
        monkeypatch.setattr(
            urlfetch,
            "address_allowed",
            lambda address: str(address) == "127.0.0.1" or policy(address),
        )
        with pytest.raises(UrlFetchError, match="private or local network address"):
            await fetch(server.url("/go"), allow_private=False)
        with pytest.raises(UrlFetchError, match="private or local network address"):
            await fetch(server.url("/meta"), allow_private=False, timeout=2.0)
        assert server.hits == ["/go", "/meta"]
        assert inner.hits == []
    finally:
        inner.stop()


async def test_redirect_to_another_scheme_is_refused(server: LocalHttpServer) -> None:
    server.routes["/r"] = Route(
        status=302, headers={"Location": "file:///etc/passwd"}, content_type=None
    )
    with pytest.raises(UrlFetchError, match="only http and https"):
        await fetch(server.url("/r"))


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/a.png", "file:///etc/passwd", "gopher://127.0.0.1/", "a.png"]
)
async def test_refuses_other_schemes(url: str) -> None:
    with pytest.raises(UrlFetchError, match="only http and https"):
        await fetch(url)


async def test_refuses_credentials_in_url(server: LocalHttpServer) -> None:
    server.routes["/a.png"] = Route(body=PNG_1PX)
    for userinfo in ("user:secret@", "user@", ":secret@"):
        url = f"http://{userinfo}127.0.0.1:{server.port}/a.png"
        with pytest.raises(UrlFetchError, match="user name or password"):
            await fetch(url)
    assert server.hits == []


async def test_error_statuses_and_bad_links(server: LocalHttpServer) -> None:
    with pytest.raises(UrlFetchError, match="HTTP status 404"):
        await fetch(server.url("/missing.png"))
    server.routes["/empty.png"] = Route(body=b"")
    with pytest.raises(UrlFetchError, match="empty"):
        await fetch(server.url("/empty.png"))
    with pytest.raises(UrlFetchError, match="find the server"):
        await fetch("http://no-such-host.invalid/a.png")
    with pytest.raises(UrlFetchError, match="port"):
        await fetch("http://127.0.0.1:99999/a.png")
    with pytest.raises(UrlFetchError):
        await fetch("http:///a.png")
