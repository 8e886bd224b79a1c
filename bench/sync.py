"""`lookalike bench` section "sync": the shop-feed sync (feed/) on a synthetic feed of many
rows served on 127.0.0.1 by the fake shop (bench.fake_shop), measured as rows per second for a
first sync (every photo downloaded, decoded, featurised and stored) and for a second sync of
the unchanged feed (every photo answered 304 Not Modified), with the process's peak resident
memory.

Rows reuse the 300 demo photos; each row's photo gets a few bytes after the JPEG's end
marker (ignored by decoders), so every row has a photo of its own hash. With
`featurizer: "stub"` the model is replaced by a constant (ones), to measure the sync's own
throughput (download, decode, store) apart from VGG16's.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import Row as TableRow
from bench.common import catalog_photos, open_scratch_engine, proc_status_mb, row
from bench.fake_shop import Served, ShopItem, ShopServer, feed_bytes
from bench.pipeline import StubFeaturizer

__all__ = [
    "FEED_PATH",
    "MODE_ROWS",
    "measure_sync",
    "section",
    "serve_synthetic_feed",
    "table_rows",
]

# Rows per mode: (with the stub model, with the real model).
MODE_ROWS = {"smoke": (100, 20), "quick": (1_000, 100), "full": (10_000, 300)}

# The shop's categories, as its product_type "Shoes > Rain boot" (feed/default_categories.toml).
CATEGORIES = ("sneaker", "rain_boot", "heel", "sandal", "heeled_sandal", "boot")
FEED_PATH = "/feed.tsv"


def serve_synthetic_feed(data: Path, rows: int) -> ShopServer:
    """A running shop with a TSV feed of `rows` products at FEED_PATH; product n's photo is
    /img/n.jpg, one of the demo photos with "lookalike-bench-n" after its end, made when asked
    for (10,000 photos held in memory would weigh on the peak memory measured here)."""
    photos = [path.read_bytes() for path in catalog_photos(data)]

    def photo(path: str) -> Served | None:
        number = path.removeprefix("/img/").removesuffix(".jpg")
        if not (path.startswith("/img/") and path.endswith(".jpg") and number.isdigit()):
            return None
        n = int(number)
        return Served(photos[n % len(photos)] + f"lookalike-bench-{n}".encode())

    shop = ShopServer(fallback=photo)
    items = [
        ShopItem(
            id=f"bench-{n}",
            title=f"Bench shoe {n}",
            price=f"{10 + n % 90}.90 EUR",
            image=f"/img/{n}.jpg",
            link=f"https://shop.example/p/{n}",
            category=CATEGORIES[n % len(CATEGORIES)],
        )
        for n in range(rows)
    ]
    feed = feed_bytes("tsv", items, shop.base)
    shop.publish(FEED_PATH, feed, content_type="text/tab-separated-values")
    return shop


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
        source=shop.base + FEED_PATH,
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
