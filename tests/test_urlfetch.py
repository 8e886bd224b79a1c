"""search.urlfetch.fetch_image against a real HTTP server on a loopback address.

Names that must look public (so that the unpatched address guard lets them through) are given
by a hand-written resolver and reach the local server through a routed network backend: the
internet faked at its edge, never the guard."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import pytest

from search.urlfetch import UrlFetchError, address_allowed, fetch_image, system_resolver

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


PUBLIC_ADDRESS = "93.184.216.34"  # a public unicast address: the guard lets it through


class StaticResolver:
    """DNS for the test: `names` answer with the given addresses, anything else (literals,
    localhost) is asked of the system. `lookups` lists every host asked, in order."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host in self.names:
            return list(self.names[host])
        return await system_resolver(host, port)


class RoutedNetwork(httpcore.AsyncNetworkBackend):
    """The network under the fetcher's checks: a connection to a routed (public) address goes
    to a local server instead; any other address is dialled as it is. `dialled` lists every
    (address, port) asked for, in order."""

    def __init__(self, routes: dict[str, tuple[str, int]]) -> None:
        self.routes = routes
        self.dialled: list[tuple[str, int]] = []
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.dialled.append((host, port))
        host, port = self.routes.get(host, (host, port))
        return await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("no unix sockets here")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


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


async def test_redirect_to_a_private_address_is_refused(server: LocalHttpServer) -> None:
    """The first hop is a public name (it resolves to a public address, which the guard
    allows; the network routes that address to the local server); the redirects to a loopback
    address where a server listens, to a name resolving to it, and to the cloud metadata
    address never reach them."""
    inner = LocalHttpServer("127.0.0.2").start()
    try:
        resolver = StaticResolver(
            {"images.shop.test": [PUBLIC_ADDRESS], "intranet.shop.test": ["127.0.0.2"]}
        )
        network = RoutedNetwork({PUBLIC_ADDRESS: ("127.0.0.1", server.port)})
        options: dict[str, Any] = {
            "allow_private": False,
            "resolver": resolver,
            "network_backend": network,
        }
        inner.routes["/secret.png"] = Route(body=PNG_1PX)
        server.routes["/a.png"] = Route(body=PNG_1PX)
        server.routes["/go"] = Route(
            status=302, headers={"Location": inner.url("/secret.png")}, content_type=None
        )
        server.routes["/dns"] = Route(
            status=302,
            headers={"Location": inner.url("/secret.png", host="intranet.shop.test")},
            content_type=None,
        )
        server.routes["/meta"] = Route(
            status=302,
            headers={"Location": "http://169.254.169.254/latest/meta-data/"},
            content_type=None,
        )
        # The first hop on its own passes the real guard and reaches the server by name.
        assert await fetch("http://images.shop.test/a.png", **options) == PNG_1PX
        assert server.host_headers == ["images.shop.test"]
        for path in ("/go", "/dns"):
            with pytest.raises(UrlFetchError, match="private or local network address"):
                await fetch(f"http://images.shop.test{path}", **options)
        with pytest.raises(UrlFetchError, match="private or local network address"):
            await fetch("http://images.shop.test/meta", **options, timeout=2.0)
        assert server.hits == ["/a.png", "/go", "/dns", "/meta"]
        assert inner.hits == []
        assert resolver.lookups == [
            *["images.shop.test"] * 2,
            "127.0.0.2",
            "images.shop.test",
            "intranet.shop.test",
            "images.shop.test",
            "169.254.169.254",
        ]
        assert {address for address, _ in network.dialled} == {PUBLIC_ADDRESS}
    finally:
        inner.stop()


async def test_a_name_resolving_to_a_private_address_is_refused(server: LocalHttpServer) -> None:
    """The guard runs on what the resolver answers, not on the name: a name resolving to a
    loopback address, or to a public and a private one (either may be dialled), is refused
    before any connection; with private addresses allowed the same name is fetched from the
    address it resolved to."""
    server.routes["/a.png"] = Route(body=PNG_1PX)
    resolver = StaticResolver(
        {
            "printer.shop.test": ["127.0.0.1"],
            "mixed.shop.test": [PUBLIC_ADDRESS, "127.0.0.1"],
        }
    )
    network = RoutedNetwork({})
    for name in ("printer.shop.test", "mixed.shop.test"):
        with pytest.raises(UrlFetchError, match="private or local network address"):
            await fetch(
                server.url("/a.png", host=name),
                allow_private=False,
                resolver=resolver,
                network_backend=network,
            )
    assert network.dialled == [] and server.hits == []
    fetched = await fetch(
        server.url("/a.png", host="printer.shop.test"),
        allow_private=True,
        resolver=resolver,
        network_backend=network,
    )
    assert fetched == PNG_1PX
    assert network.dialled == [("127.0.0.1", server.port)]
    assert server.host_headers == [f"printer.shop.test:{server.port}"]


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
