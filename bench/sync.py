"""`lookalike bench` section "sync": the shop-feed sync (feed/) on a synthetic feed of many
rows served on 127.0.0.1, measured as rows per second for a first sync (every photo
downloaded, decoded, featurised and stored) and for a second sync of the unchanged feed
(every photo answered 304 Not Modified), with the process's peak resident memory.

Rows reuse the 300 demo photos; each row's photo gets a few bytes after the JPEG's end
marker (ignored by decoders), so every row has a photo of its own hash. With
`featurizer: "stub"` the model is replaced by a constant (ones), to measure the sync's own
throughput (download, decode, store) apart from VGG16's.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.common import Row as TableRow
from bench.common import catalog_photos, open_scratch_engine, proc_status_mb, row
from bench.pipeline import StubFeaturizer

__all__ = ["MODE_ROWS", "measure_sync", "section", "serve_synthetic_feed", "table_rows"]

# Rows per mode: (with the stub model, with the real model).
MODE_ROWS = {"smoke": (100, 20), "quick": (1_000, 100), "full": (10_000, 300)}

CATEGORIES = ("Sneaker", "Rain boot", "Heel", "Sandal", "Heeled sandal", "Boot")


class SyntheticShop:
    """A feed of `rows` products over `photos`, and their photos, on 127.0.0.1."""

    def __init__(self, photos: list[bytes], rows: int) -> None:
        self.photos, self.rows = photos, rows
        self.full = 0
        self.not_modified = 0
        self._lock = threading.Lock()
        shop = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                shop.answer(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.feed = self._feed()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def photo(self, number: int) -> bytes:
        return self.photos[number % len(self.photos)] + f"lookalike-bench-{number}".encode()

    def _feed(self) -> bytes:
        lines = ["id\ttitle\tlink\timage_link\tprice\tavailability\tproduct_type"]
        for n in range(self.rows):
            lines.append(
                f"bench-{n}\tBench shoe {n}\thttps://shop.example/p/{n}\t"
                f"{self.base}/img/{n}.jpg\t{10 + n % 90}.90 EUR\tin_stock\t"
                f"Shoes > {CATEGORIES[n % len(CATEGORIES)]}"
            )
        return ("\n".join(lines) + "\n").encode()

    def answer(self, request: BaseHTTPRequestHandler) -> None:
        if request.path == "/feed.tsv":
            body, content_type, etag = self.feed, "text/tab-separated-values", None
        elif request.path.startswith("/img/") and request.path[5:-4].isdigit():
            body, content_type = self.photo(int(request.path[5:-4])), "image/jpeg"
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            if request.headers.get("If-None-Match") == etag:
                with self._lock:
                    self.not_modified += 1
                request.send_response(304)
                request.send_header("ETag", etag)
                request.end_headers()
                return
        else:
            request.send_error(404)
            return
        request.send_response(200)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        if etag:
            request.send_header("ETag", etag)
        request.end_headers()
        request.wfile.write(body)
        if etag:
            with self._lock:
                self.full += 1


def serve_synthetic_feed(data: Path, rows: int) -> SyntheticShop:
    """A running synthetic shop; its feed is at `shop.base + "/feed.tsv"`."""
    return SyntheticShop([path.read_bytes() for path in catalog_photos(data)], rows)


def section(args: dict[str, Any]) -> dict[str, Any]:
    """Both measurements at the mode's sizes (args["rows"] / args["model_rows"] override)."""
    stub_rows, model_rows = MODE_ROWS[str(args.get("mode", "quick"))]
    return {
        "stub": measure_sync({**args, "featurizer": "stub", "rows": args.get("rows", stub_rows)}),
        "model": measure_sync(
            {**args, "featurizer": "model", "rows": args.get("model_rows", model_rows)}
        ),
    }


def measure_sync(args: dict[str, Any]) -> dict[str, Any]:
    """A first and a no-change sync of a synthetic feed of args["rows"] rows."""
    from feed import FetchOptions, SyncOptions, load_category_map, sync_feed

    rows = int(args["rows"])
    stub = args.get("featurizer", "stub") == "stub"
    shop = serve_synthetic_feed(Path(args["data"]), rows)
    engine = open_scratch_engine(
        Path(args["workdir"]) / f"sync-{args.get('featurizer', 'stub')}-{rows}",
        args,
        featurizer=(lambda _backbone: StubFeaturizer()) if stub else None,
    )
    engine.warm_up()
    options = SyncOptions(
        source=shop.base + "/feed.tsv",
        categories=load_category_map(None),
        fetch=FetchOptions(max_bytes=20 << 20, timeout_seconds=30, allow_private=True),
        concurrency=int(args.get("concurrency", 8)),
        batch_size=int(args.get("batch_size", 32)),
        lease_ttl=timedelta(minutes=30),
    )
    result: dict[str, Any] = {"rows": rows, "featurizer": "stub" if stub else "model"}
    try:
        for name in ("first", "unchanged"):
            rss_before = proc_status_mb("VmRSS")
            started = time.perf_counter()
            summary = asyncio.run(sync_feed(engine, options))
            seconds = time.perf_counter() - started
            result[name] = {
                "status": summary.status,
                "seconds": round(seconds, 2),
                "rows_per_s": round(rows / seconds, 1),
                "featurised": summary.counts.get("featurised", 0),
                "downloaded": summary.counts.get("images_downloaded", 0),
                "not_modified": summary.counts.get("images_not_modified", 0),
                "rss_growth_mb": round(proc_status_mb("VmRSS") - rss_before, 1),
                "peak_rss_mb": round(proc_status_mb("VmHWM"), 1),
            }
    finally:
        engine.close()
        shop.stop()
    return result


def table_rows(results: dict[str, Any]) -> list[TableRow]:
    table: list[TableRow] = []
    for kind in ("stub", "model"):
        measured = results.get(kind)
        if not isinstance(measured, dict):
            continue
        for name in ("first", "unchanged"):
            part = measured.get(name)
            if not isinstance(part, dict):
                continue
            model = "stub model" if kind == "stub" else "the real model"
            label = f"{measured.get('rows')} rows, {name} sync ({model})"
            table.append(row("sync", f"{label}: rows/s", f"{part['rows_per_s']}"))
            table.append(
                row(
                    "sync",
                    f"{label}: featurised, downloaded, 304",
                    f"{part['featurised']}, {part['downloaded']}, {part['not_modified']}",
                )
            )
            table.append(row("sync", f"{label}: peak RSS MB", f"{part['peak_rss_mb']}"))
    return table
