"""A shop written by hand, for the feed tests and the sync benchmark (bench.sync): its
products (ShopItem rows, e.g. the demo catalogue of ../shared/footwear), its feed in each
format (RSS, Atom, TSV, CSV), and an HTTP server on 127.0.0.1 serving the feed and the photos.

The server answers ETag / If-None-Match with 304 and counts what it served per path, so a
caller can see that an unchanged photo is not downloaded again. What it serves is
`files[path]`, else what `fallback(path)` makes (a benchmark's thousands of photos, made on
request rather than held in memory), else a 404. Special routes: /hang/... never answers
until the server stops. It lives in bench/ because the benchmark ships in the product and
cannot import the tests.
"""

from __future__ import annotations

import csv
import hashlib
import io
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "Served",
    "ShopItem",
    "ShopServer",
    "atom",
    "changed",
    "demo_items",
    "feed_bytes",
    "rss",
    "text_feed",
]

G_NS = "http://base.google.com/ns/1.0"


@dataclass(frozen=True)
class ShopItem:
    """One feed row (a variant when group is set)."""

    id: str
    title: str
    price: str  # "40.99 EUR"
    image: str  # path on the server, e.g. "/img/footwear_0000.jpg"
    link: str = ""
    category: str = ""  # the shop's category word, e.g. "rain_boot"
    availability: str = "in_stock"
    extra_images: tuple[str, ...] = ()
    sale_price: str = ""
    sale_dates: str = ""
    group: str = ""
    color: str = ""

    def product_type(self) -> str:
        return "Shoes > " + self.category.replace("_", " ").capitalize() if self.category else ""


def demo_items(products_csv: Path, limit: int | None = None) -> list[ShopItem]:
    """The shared demo catalogue as feed rows (photos under /img/)."""
    with products_csv.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        ShopItem(
            id=row["sku"],
            title=row["name"],
            price=f"{row['price']} {row['currency']}",
            image=f"/img/{row['image']}",
            link=row["url"],
            category=row["category"],
        )
        for row in rows[:limit]
    ]


def changed(items: Sequence[ShopItem], index: int, **changes: Any) -> list[ShopItem]:
    result = list(items)
    result[index] = replace(result[index], **changes)
    return result


# ---- feed documents ----------------------------------------------------------------------------


def _attributes(item: ShopItem, base: str) -> list[tuple[str, str]]:
    values = [
        ("id", item.id),
        ("title", item.title),
        ("link", item.link),
        ("image_link", base + item.image if item.image else ""),
        ("price", item.price),
        ("availability", item.availability),
        ("product_type", item.product_type()),
        ("google_product_category", "Apparel & Accessories > Shoes"),
        ("sale_price", item.sale_price),
        ("sale_price_effective_date", item.sale_dates),
        ("item_group_id", item.group),
        ("color", item.color),
        ("condition", "new"),  # an attribute the sync does not use
    ]
    values.extend(("additional_image_link", base + path) for path in item.extra_images)
    return [(name, value) for name, value in values if value]


def rss(items: Iterable[ShopItem], base: str) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<rss version="2.0" xmlns:g="{G_NS}"><channel><title>Demo shop</title>',
        "<link>https://shop.example</link><description>feed</description>",
    ]
    for item in items:
        parts.append("<item>")
        for name, value in _attributes(item, base):
            parts.append(f"<g:{name}>{escape(value)}</g:{name}>")
        parts.append("<g:shipping><g:country>DE</g:country><g:price>4.90 EUR</g:price>")
        parts.append("</g:shipping></item>")
    parts.append("</channel></rss>")
    return "\n".join(parts).encode("utf-8")


def atom(items: Iterable[ShopItem], base: str) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<feed xmlns="http://www.w3.org/2005/Atom" xmlns:g="{G_NS}">',
        "<title>Demo shop</title><id>urn:demo</id><updated>2026-11-29T08:00:00Z</updated>",
    ]
    for item in items:
        parts.append("<entry><id>urn:entry</id>")
        for name, value in _attributes(item, base):
            if name == "title":
                parts.append(f"<title>{escape(value)}</title>")
            elif name == "link":
                parts.append(f'<link rel="alternate" href="{escape(value)}"/>')
            else:
                parts.append(f"<g:{name}>{escape(value)}</g:{name}>")
        parts.append("</entry>")
    parts.append("</feed>")
    return "\n".join(parts).encode("utf-8")


def text_feed(items: Iterable[ShopItem], base: str, *, delimiter: str) -> bytes:
    names = [
        "id",
        "title",
        "link",
        "image_link",
        "additional_image_link",
        "price",
        "availability",
        "product_type",
        "google_product_category",
        "sale_price",
        "sale_price_effective_date",
        "item_group_id",
        "color",
        "condition",
    ]
    rows: list[list[str]] = []
    for item in items:
        values: dict[str, str] = {}
        for name, value in _attributes(item, base):
            values[name] = f"{values[name]},{value}" if name in values else value
        rows.append([values.get(name, "") for name in names])
    if delimiter == "\t":
        # A TSV as Google defines it: one line per product, tabs, no quoting.
        lines = ["\t".join(" ".join(cell.split()) for cell in cells) for cells in [names, *rows]]
        return ("\n".join(lines) + "\n").encode("utf-8")
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerows([names, *rows])
    return buffer.getvalue().encode("utf-8")


def feed_bytes(kind: str, items: Iterable[ShopItem], base: str) -> bytes:
    if kind == "rss":
        return rss(items, base)
    if kind == "atom":
        return atom(items, base)
    return text_feed(items, base, delimiter="\t" if kind == "tsv" else ",")


# ---- the HTTP server -------------------------------------------------------------------------


@dataclass
class Served:
    body: bytes
    content_type: str = "image/jpeg"
    status: int = 200


@dataclass
class ShopServer:
    """The shop's web server on 127.0.0.1 in a thread. `files[path]` is what it serves;
    a path not there is `fallback(path)` when that gives something, else a 404."""

    files: dict[str, Served] = field(default_factory=dict)
    fallback: Callable[[str], Served | None] | None = None
    full: Counter[str] = field(default_factory=Counter)  # 200 answers with a body, per path
    not_modified: Counter[str] = field(default_factory=Counter)  # 304 answers, per path
    images_served: int = 0  # 200 answers under /img/, in total
    hung: int = 0  # requests to /hang/... (never answered)
    served_event: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer._answer(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def serve_photos(self, folder: Path, names: Iterable[str]) -> None:
        for name in names:
            self.files[f"/img/{name}"] = Served((folder / name).read_bytes())

    def publish(self, path: str, body: bytes, content_type: str = "application/xml") -> str:
        """Serve a feed document at `path`; its URL."""
        self.files[path] = Served(body, content_type=content_type)
        return self.base + path

    def wait_for_images(self, count: int, timeout: float) -> bool:
        """Wait until `count` photos were served in total (False on timeout)."""
        with self.served_event:
            return self.served_event.wait_for(lambda: self.images_served >= count, timeout)

    def _trickle(self, request: BaseHTTPRequestHandler) -> None:
        """A byte every 0.1 s for 3 s: each read is quick, the whole download is not."""
        request.send_response(200)
        request.send_header("Content-Type", "application/xml")
        request.send_header("Content-Length", "30")
        request.end_headers()
        try:
            for _ in range(30):
                request.wfile.write(b" ")
                request.wfile.flush()
                if self._stop.wait(0.1):
                    return
        except OSError:
            return  # the client gave up

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path
        if path.startswith("/hang/"):
            with self.served_event:
                self.hung += 1
            self._stop.wait()  # never answers while the test runs
            return
        if path.startswith("/trickle/"):
            self._trickle(request)
            return
        served = self.files.get(path)
        if served is None and self.fallback is not None:
            served = self.fallback(path)
        if served is None:
            request.send_error(404)
            return
        etag = '"' + hashlib.sha256(served.body).hexdigest()[:16] + '"'
        try:
            if request.headers.get("If-None-Match") == etag and served.status == 200:
                with self.served_event:  # the handler threads count at once
                    self.not_modified[path] += 1
                request.send_response(304)
                request.send_header("ETag", etag)
                request.end_headers()
                return
            # Counted before the answer goes out: a client that has its answer must find it
            # counted (counting after the write raced with the test's assertions).
            with self.served_event:
                self.full[path] += 1
                if path.startswith("/img/"):
                    self.images_served += 1
                self.served_event.notify_all()
            request.send_response(served.status)
            request.send_header("Content-Type", served.content_type)
            request.send_header("Content-Length", str(len(served.body)))
            request.send_header("ETag", etag)
            request.end_headers()
            request.wfile.write(served.body)
        except OSError:
            return  # the client gave up
