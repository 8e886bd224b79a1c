"""Fetching an image from a URL a staff member sent, without letting that URL reach inside.

`fetch_image` takes http and https URLs only, without credentials, on any port. Every host is
resolved here (by a `Resolver`: asyncio getaddrinfo unless the caller gives another) and
*every* address it resolves to is checked with the ipaddress module; the TCP connection then
goes to one of those checked addresses, so a DNS answer that changes between the check and the
connection (DNS rebinding) cannot redirect it.
The Host header, TLS SNI and certificate checks keep using the URL's host name: the checks run
inside the connection's network backend (httpcore), which is handed the host name and decides
which address to dial. No proxy from the environment is used (it would bypass the checks).

Redirects are followed by hand (at most `MAX_REDIRECTS`), each hop checked like the first.
The body is streamed and abandoned as soon as it passes `max_bytes`; a Content-Length that
says too much is refused before any body byte is read. The whole fetch, DNS included, must
finish within `timeout` seconds. Whether the bytes are really an image is for
`search.featurize.preprocess` to decide; here only the Content-Type must say ``image/*``.

`fetch_to_file` fetches any other document (a shop's product feed) the same way, streamed to
a file rather than held in memory, under one deadline for the whole download.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

import httpcore
import httpx

from search.errors import UrlFetchError

log = logging.getLogger(__name__)

__all__ = [
    "MAX_REDIRECTS",
    "FetchedImage",
    "Resolver",
    "UrlFetchError",
    "address_allowed",
    "fetch_image",
    "fetch_image_conditional",
    "fetch_to_file",
    "system_resolver",
]

MAX_REDIRECTS: Final = 3
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_SCHEMES: Final = frozenset({"http", "https"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_CHUNK: Final = 64 * 1024
_HEADERS: Final = [
    (b"User-Agent", b"LookalikeBot/1.0 (image search)"),
    (b"Accept", b"image/*"),
    (b"Accept-Encoding", b"identity"),
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""(host, port) -> the addresses (as text) the host name or literal resolves to; raises OSError
(e.g. socket.gaierror) when it cannot. What it returns is checked before anything is dialled."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The system's answer (asyncio getaddrinfo, TCP)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(sockaddr[0]) for _, _, _, _, sockaddr in infos]


@dataclass(frozen=True, slots=True)
class FetchedImage:
    """What a conditional fetch got: the body (None when the server answered 304 Not
    Modified) and the validators to send next time."""

    data: bytes | None
    etag: str | None
    last_modified: str | None

    @property
    def not_modified(self) -> bool:
        return self.data is None


def address_allowed(address: IPAddress) -> bool:
    """True for a public unicast address; False for private, loopback, link-local, multicast,
    reserved, unspecified, shared (CGNAT) and documentation addresses, also when they hide in
    an IPv4-mapped, 6to4 or Teredo IPv6 address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour]
        if address.teredo is not None:
            embedded.extend(address.teredo)
        if any(inner is not None and not address_allowed(inner) for inner in embedded):
            return False
    return not (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


async def fetch_image(
    url: str,
    *,
    max_bytes: int,
    timeout: float,  # noqa: ASYNC109 - the brief's signature; applied with asyncio.timeout
    allow_private: bool,
    resolver: Resolver = system_resolver,
    network_backend: httpcore.AsyncNetworkBackend | None = None,
) -> bytes:
    """The body of an image at `url` (http or https). Raises UrlFetchError.

    `network_backend` dials the checked addresses (default: httpcore's AnyIO backend); tests
    give one that routes a public address to a local server."""
    fetched = await fetch_image_conditional(
        url,
        max_bytes=max_bytes,
        timeout=timeout,
        allow_private=allow_private,
        resolver=resolver,
        network_backend=network_backend,
    )
    assert fetched.data is not None  # no validator was sent, so no 304 is accepted
    return fetched.data


async def fetch_image_conditional(
    url: str,
    *,
    max_bytes: int,
    timeout: float,  # noqa: ASYNC109 - as fetch_image; applied with asyncio.timeout
    allow_private: bool,
    etag: str | None = None,
    last_modified: str | None = None,
    resolver: Resolver = system_resolver,
    network_backend: httpcore.AsyncNetworkBackend | None = None,
) -> FetchedImage:
    """Like fetch_image, sending If-None-Match / If-Modified-Since when `etag` /
    `last_modified` (from an earlier FetchedImage) are given: an unchanged image then comes
    back as FetchedImage(data=None) without its body. Raises UrlFetchError."""
    conditions = [(b"If-None-Match", etag), (b"If-Modified-Since", last_modified)]
    headers = _HEADERS + [(name, value.encode("latin-1")) for name, value in conditions if value]

    async def image(response: httpcore.Response) -> FetchedImage:
        return await _image_body(
            response, max_bytes=max_bytes, conditional=bool(etag or last_modified)
        )

    backend = _CheckedBackend(allow_private=allow_private, resolver=resolver, inner=network_backend)
    return await _fetch(url, backend, timeout=timeout, headers=headers, handle=image, what="image")


async def fetch_to_file(
    url: str,
    destination: Path,
    *,
    max_bytes: int,
    timeout: float,  # noqa: ASYNC109 - one deadline for the whole download, asyncio.timeout
    allow_private: bool,
    user_agent: str,
    resolver: Resolver = system_resolver,
    network_backend: httpcore.AsyncNetworkBackend | None = None,
) -> None:
    """Stream the document at `url` (HTTP 200 only) into `destination`, at most `max_bytes`,
    with the same address checks as fetch_image. Raises UrlFetchError."""
    headers = [(b"User-Agent", user_agent.encode("latin-1")), (b"Accept-Encoding", b"identity")]

    async def to_file(response: httpcore.Response) -> None:
        if response.status != 200:
            raise UrlFetchError(
                f"the server answered with HTTP status {response.status}.",
                retryable=response.status == 429 or response.status >= 500,
            )
        _refuse_announced(response, max_bytes, what="the file")
        size = 0
        with destination.open("wb") as handle:
            async for chunk in response.aiter_stream():
                size += len(chunk)
                if size > max_bytes:
                    raise UrlFetchError(f"the file is larger than {_megabytes(max_bytes)}.")
                handle.write(chunk)  # a worker thread's own event loop: blocking is fine

    backend = _CheckedBackend(allow_private=allow_private, resolver=resolver, inner=network_backend)
    await _fetch(url, backend, timeout=timeout, headers=headers, handle=to_file, what="file")


_T = TypeVar("_T")


async def _fetch(
    url: str,
    backend: _CheckedBackend,
    *,
    timeout: float,  # noqa: ASYNC109 - applied with asyncio.timeout
    headers: list[tuple[bytes, bytes]],
    handle: Callable[[httpcore.Response], Awaitable[_T]],
    what: str,
) -> _T:
    """`handle`'s result for the response `url` redirects to (each hop checked); transport
    failures become UrlFetchError."""
    try:
        async with (
            asyncio.timeout(timeout),
            httpcore.AsyncConnectionPool(network_backend=backend, retries=0) as pool,
        ):
            return await _follow(pool, _parse(url), seconds=timeout, headers=headers, handle=handle)
    except (TimeoutError, httpcore.TimeoutException):
        raise UrlFetchError(
            f"the server did not send the {what} within {timeout:g} s.", retryable=True
        ) from None
    except httpcore.ConnectError as exc:
        log.info("url fetch: cannot connect: %s", exc)
        raise UrlFetchError("I could not connect to that server.", retryable=True) from None
    except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
        log.info("url fetch: broken response: %s", exc)
        raise UrlFetchError(
            "the server's answer was broken or cut short.", retryable=True
        ) from None
    except httpcore.UnsupportedProtocol:
        raise UrlFetchError("only http and https links are supported.") from None


async def _follow(
    pool: httpcore.AsyncConnectionPool,
    url: httpx.URL,
    *,
    seconds: float,
    headers: list[tuple[bytes, bytes]],
    handle: Callable[[httpcore.Response], Awaitable[_T]],
) -> _T:
    extensions = {
        "timeout": {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}
    }
    for _ in range(MAX_REDIRECTS + 1):
        async with pool.stream(
            "GET", _core_url(url), headers=headers, extensions=extensions
        ) as response:
            if response.status in _REDIRECT_STATUSES:
                location = _header(response, b"location")
                if not location:
                    raise UrlFetchError("the server sent a redirect without a destination.")
                try:
                    url = _checked(url.join(location))
                except httpx.InvalidURL:
                    raise UrlFetchError("the server redirected to an invalid link.") from None
                continue
            return await handle(response)
    raise UrlFetchError(f"the link redirects more than {MAX_REDIRECTS} times.")


async def _image_body(
    response: httpcore.Response, *, max_bytes: int, conditional: bool
) -> FetchedImage:
    etag = _header(response, b"etag")
    last_modified = _header(response, b"last-modified")
    if response.status == 304 and conditional:
        return FetchedImage(data=None, etag=etag, last_modified=last_modified)
    if not 200 <= response.status < 300:
        raise UrlFetchError(
            f"the server answered with HTTP status {response.status}.",
            retryable=response.status == 429 or response.status >= 500,
        )
    content_type = (_header(response, b"content-type") or "").split(";")[0].strip()
    if not content_type.lower().startswith("image/"):
        shown = content_type[:50] or "no content type"
        raise UrlFetchError(f"that link is not an image ({shown}).")
    _refuse_announced(response, max_bytes, what="the image")
    data = await _read_limited(response, max_bytes)
    return FetchedImage(data=data, etag=etag, last_modified=last_modified)


def _refuse_announced(response: httpcore.Response, max_bytes: int, *, what: str) -> None:
    """A Content-Length over the limit is refused before any body byte is read."""
    length = _header(response, b"content-length")
    if length is not None and length.strip().isdigit() and int(length) > max_bytes:
        raise UrlFetchError(f"{what} is larger than {_megabytes(max_bytes)}.")


async def _read_limited(response: httpcore.Response, max_bytes: int) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_stream():
        body += chunk
        if len(body) > max_bytes:
            raise UrlFetchError(f"the image is larger than {_megabytes(max_bytes)}.")
    if not body:
        raise UrlFetchError("the server sent an empty file.")
    return bytes(body)


def _parse(url: str) -> httpx.URL:
    text = url.strip()
    if not text:
        raise UrlFetchError("the link is empty.")
    try:
        return _checked(httpx.URL(text))
    except httpx.InvalidURL:
        raise UrlFetchError("that is not a valid link.") from None


def _checked(url: httpx.URL) -> httpx.URL:
    """The URL if its scheme, credentials and host are acceptable (addresses come later)."""
    if url.scheme not in _SCHEMES:
        raise UrlFetchError("only http and https links are supported.")
    if url.userinfo:
        raise UrlFetchError("links with a user name or password are not supported.")
    if not url.host:
        raise UrlFetchError("the link has no host name.")
    if url.port is not None and not 0 < url.port < 65536:
        raise UrlFetchError("the link's port number is not valid.")
    return url


def _core_url(url: httpx.URL) -> httpcore.URL:
    port = url.port if url.port is not None else _DEFAULT_PORTS[url.scheme]
    return httpcore.URL(
        scheme=url.raw_scheme, host=url.raw_host, port=port, target=url.raw_path or b"/"
    )


def _header(response: httpcore.Response, name: bytes) -> str | None:
    for key, value in response.headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB" if size >= 1024 * 1024 else f"{size} bytes"


async def resolve_checked(
    host: str, port: int, *, allow_private: bool, resolver: Resolver = system_resolver
) -> list[str]:
    """Every address `host` resolves to, each checked; refuses if any one is not allowed."""
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        resolved = await resolver(literal, port)
    except (OSError, UnicodeError):
        raise UrlFetchError(f"I could not find the server {host[:100]}.") from None
    addresses: list[str] = []
    for text in resolved:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            raise UrlFetchError(f"I could not find the server {host[:100]}.") from None
        if not allow_private and not address_allowed(address):
            log.warning("url fetch refused: %s resolves to %s", host, address)
            raise UrlFetchError("that link points to a private or local network address.")
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise UrlFetchError(f"I could not find the server {host[:100]}.")
    return addresses


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """Dials only addresses it has just resolved and checked itself."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolver: Resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._resolver = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve_checked(
            host, port, allow_private=self._allow_private, resolver=self._resolver
        )
        error: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UrlFetchError("only http and https links are supported.")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
