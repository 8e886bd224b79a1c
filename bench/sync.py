"""`lookalike bench` section "sync": the shop-feed sync (feed/) on a synthetic feed of many
rows served on 127.0.0.1 by the fake shop (bench.fake_shop), measured as rows per second for a
first sync (every photo downloaded, decoded, featurised and stored) and for a second sync of
the unchanged feed (every photo answered 304 Not Modified), with the process's peak resident
memory.

Rows reuse the 300 demo photos; each row's photo gets a few bytes after the JPEG's end
marker (ignored by decoders), so every row has a photo of its own hash. With
`featurizer: "stub"` the model is replaced by a constant (ones), to measure the sync's own
throughput (download, decode, store) apart from VGG16's.

The "shared" scenario is a shop whose products share photos (a set and its base product, as
Google allows): N rows over P photos, row n showing photo n % P at one URL, byte for byte.
Its goal (issue 23): every product is created, each photo featurised once, and an unchanged
re-sync downloads and featurises nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    "SHARED_GOAL",
    "SHARED_ROWS",
    "measure_sync",
    "section",
    "serve_synthetic_feed",
    "table_rows",
]

# Rows per mode: (with the stub model, with the real model).
MODE_ROWS = {"smoke": (100, 20), "quick": (1_000, 100), "full": (10_000, 300)}
# The shared-photos scenario per mode: (rows, distinct photos), with the stub model.
SHARED_ROWS = {"smoke": (40, 6), "quick": (500, 75), "full": (2_000, 300)}
SHARED_GOAL = "all products created; unchanged re-sync downloads and featurises nothing"

# The shop's categories, as its product_type "Shoes > Rain boot" (feed/default_categories.toml).
CATEGORIES = ("sneaker", "rain_boot", "heel", "sandal", "heeled_sandal", "boot")
FEED_PATH = "/feed.tsv"


def serve_synthetic_feed(data: Path, rows: int, shared: int | None = None) -> ShopServer:
    """A running shop with a TSV feed of `rows` products at FEED_PATH. Product n's photo is
    /img/n.jpg, one of the demo photos with "lookalike-bench-n" after its end, made when asked
    for (10,000 photos held in memory would weigh on the peak memory measured here); with
    `shared` photos, it is /img/(n % shared).jpg, demo photo n % shared as it is."""
    photos = [path.read_bytes() for path in catalog_photos(data)]
    if shared is not None and not 0 < shared <= len(photos):
        raise ValueError(f"shared photos must be 1 to {len(photos)}, not {shared}")

    def photo(path: str) -> Served | None:
        number = path.removeprefix("/img/").removesuffix(".jpg")
        if not (path.startswith("/img/") and path.endswith(".jpg") and number.isdigit()):
            return None
        n = int(number)
        if shared is not None:
            return Served(photos[n]) if n < shared else None
        return Served(photos[n % len(photos)] + f"lookalike-bench-{n}".encode())

    shop = ShopServer(fallback=photo)
    items = [
        ShopItem(
            id=f"bench-{n}",
            title=f"Bench shoe {n}",
            price=f"{10 + n % 90}.90 EUR",
            image=f"/img/{n if shared is None else n % shared}.jpg",
            link=f"https://shop.example/p/{n}",
            category=CATEGORIES[n % len(CATEGORIES)],
        )
        for n in range(rows)
    ]
    feed = feed_bytes("tsv", items, shop.base)
    shop.publish(FEED_PATH, feed, content_type="text/tab-separated-values")
    return shop


def section(args: dict[str, Any]) -> dict[str, Any]:
    """The three measurements at the mode's sizes (args["rows"] / args["model_rows"] /
    args["shared_rows"] and args["shared_photos"] override). The shared scenario runs first:
    the smallest, so the memory the others leave behind does not count in its figures."""
    mode = str(args.get("mode", "quick"))
    stub_rows, model_rows = MODE_ROWS[mode]
    shared_rows, shared_photos = SHARED_ROWS[mode]
    shared = {
        "featurizer": "stub",
        "rows": args.get("shared_rows", shared_rows),
        "photos": args.get("shared_photos", shared_photos),
    }
    return {
        "shared": measure_sync({**args, **shared}),
        "stub": measure_sync({**args, "featurizer": "stub", "rows": args.get("rows", stub_rows)}),
        "model": measure_sync(
            {**args, "featurizer": "model", "rows": args.get("model_rows", model_rows)}
        ),
    }


def measure_sync(args: dict[str, Any]) -> dict[str, Any]:
    """A first and a no-change sync of a synthetic feed of args["rows"] rows (over
    args["photos"] shared photos when given)."""
    from feed import FetchOptions, SyncOptions, load_category_map, sync_feed

    rows = int(args["rows"])
    shared = int(args["photos"]) if args.get("photos") is not None else None
    stub = args.get("featurizer", "stub") == "stub"
    _reset_peak_rss()
    shop = serve_synthetic_feed(Path(args["data"]), rows, shared)
    folder = f"sync-{args.get('featurizer', 'stub')}-{rows}" + (f"-{shared}" if shared else "")
    engine = open_scratch_engine(
        Path(args["workdir"]) / folder,
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
    if shared is not None:
        result["photos"] = shared
    try:
        for name in ("first", "unchanged"):
            rss_before = proc_status_mb("VmRSS")
            started = time.perf_counter()
            summary = asyncio.run(sync_feed(engine, options))
            seconds = time.perf_counter() - started
            result[name] = {
                "status": summary.status,
                "products": len(engine.catalog.products()),
                "added": summary.counts.get("added", 0),
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


def _reset_peak_rss() -> None:
    """Start the process's peak resident memory (VmHWM) afresh, so that each measurement's
    peak is its own and not an earlier one's in the same process (Linux: clear_refs 5)."""
    with contextlib.suppress(OSError):  # elsewhere the peak is the process's so far
        Path("/proc/self/clear_refs").write_text("5")


def table_rows(results: dict[str, Any]) -> list[TableRow]:
    table = shared_rows(results.get("shared"))
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


def shared_rows(measured: Any) -> list[TableRow]:
    """The shared-photos scenario's rows: each sync's counts, time and peak, and the goal."""
    if not isinstance(measured, dict):
        return []
    label = f"{measured.get('rows')} rows sharing {measured.get('photos')} photos (stub model)"
    table: list[TableRow] = []
    for name in ("first", "unchanged"):
        part = measured.get(name)
        if not isinstance(part, dict):
            return table
        table.append(
            row(
                "sync",
                f"{label}, {name} sync: products, featurised, downloaded, 304",
                f"{part['products']}, {part['featurised']}, {part['downloaded']}, "
                f"{part['not_modified']} in {part['seconds']} s, peak RSS {part['peak_rss_mb']} MB",
            )
        )
    first, unchanged = measured["first"], measured["unchanged"]
    met = (
        first["status"] == unchanged["status"] == "ok"
        and first["products"] == unchanged["products"] == measured["rows"]
        and unchanged["downloaded"] == unchanged["featurised"] == 0
    )
    value = (
        f"{first['products']} of {measured['rows']} products; re-sync downloaded "
        f"{unchanged['downloaded']}, featurised {unchanged['featurised']}"
    )
    table.append(row("sync", f"{label}: goal", value, SHARED_GOAL, met))
    return table
