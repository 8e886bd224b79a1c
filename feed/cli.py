"""`lookalike catalog sync SOURCE [--dry-run] [--force]`: the command-line door of the feed
sync. Parses, makes one call (`feed.sync.sync_feed`), renders the summary.

Wiring (lookalike/cli.py): `feed.cli.register(catalog_subparsers)` adds the `sync` action
with `handler=feed.cli.run`; `run(args, settings)` returns the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

from feed.categories import CategoryMapError, load_category_map
from feed.images import FetchOptions
from feed.sync import ProgressHooks, SyncOptions, SyncSummary, sync_feed
from lookalike.settings import Settings

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_REFUSED = 3  # the guard refused the feed, or another sync holds the lease
SHOWN_ROWS = 5


def register(catalog_subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sync = catalog_subparsers.add_parser(
        "sync",
        help="sync the catalogue with the shop's product feed (Google Merchant Center format)",
        description="Add, update, hide and restore products so the catalogue matches the "
        "shop's product feed (RSS/Atom XML with g: attributes, TSV or CSV).",
    )
    sync.add_argument("source", nargs="?", help="feed file or http(s) URL (default: FEED_URL)")
    sync.add_argument("--dry-run", action="store_true", help="print the changes, make none")
    sync.add_argument(
        "--force",
        action="store_true",
        help="apply a feed the guard refuses (empty, or hiding more than FEED_MAX_HIDE_SHARE)",
    )
    sync.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sync.set_defaults(handler=run)


def sync_options(
    settings: Settings, source: str, *, dry_run: bool = False, force: bool = False
) -> SyncOptions:
    """The sync's options from Settings (raises CategoryMapError for a bad mapping file)."""
    return SyncOptions(
        source=source,
        categories=load_category_map(settings.feed_category_map),
        fetch=FetchOptions(
            max_bytes=settings.max_image_bytes,
            timeout_seconds=settings.feed_image_timeout_seconds,
            allow_private=settings.url_fetch_allow_private,
            retries=settings.feed_image_retries,
        ),
        default_currency=settings.currency,
        dry_run=dry_run,
        force=force,
        max_hide_share=settings.feed_max_hide_share,
        concurrency=settings.feed_download_concurrency,
        max_images=settings.feed_max_images_per_product,
        max_feed_bytes=settings.feed_max_bytes,
        batch_size=settings.inference_batch_size,
    )


def run(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    source = args.source or settings.feed_url
    if not source:
        print("error: give a feed file or URL, or set FEED_URL", file=sys.stderr)
        return EXIT_ERROR
    try:
        options = sync_options(settings, source, dry_run=args.dry_run, force=args.force)
    except CategoryMapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    from tqdm import tqdm

    from lookalike.composition import open_engine

    engine = open_engine(settings)
    bar = tqdm(total=0, unit="img", desc="photos", disable=args.quiet or None, file=sys.stderr)

    def on_total(total: int) -> None:
        bar.total = total
        bar.refresh()

    try:
        summary = asyncio.run(
            sync_feed(engine, options, progress=ProgressHooks(on_total, bar.update))
        )
    finally:
        bar.close()
        engine.close()
    out.write(render_summary(summary))
    if summary.status in ("ok", "dry-run"):
        return EXIT_OK
    return EXIT_REFUSED if summary.status in ("refused", "busy") else EXIT_ERROR


def render_summary(summary: SyncSummary, *, shown: int = SHOWN_ROWS) -> str:
    """Plain text: the outcome, the counts, the first rows of each kind of change, the first
    problems. Shared by the CLI and the bot (which escapes it)."""
    lines = [f"{summary.status}: {summary.message}"]
    if summary.counts:
        lines.append(", ".join(f"{key} {value}" for key, value in summary.counts.items()))
    plan = summary.plan
    if plan is not None:
        kinds = {
            "add": [
                f"{p.sku} {p.fields.name!r} {p.fields.price} {p.fields.currency}" for p in plan.add
            ],
            "update": [f"{p.sku}: {', '.join(changes)}" for p, changes in plan.update],
            "stock": [f"{sku}: {'in' if flag else 'out of'} stock" for sku, flag in plan.stock],
            "restore": list(plan.restore),
            "hide": list(plan.hide),
        }
        for kind, rows in kinds.items():
            if rows:
                more = f" (+{len(rows) - shown} more)" if len(rows) > shown else ""
                lines.append(f"{kind}: {'; '.join(rows[:shown])}{more}")
    if summary.problems:
        lines.append(f"{len(summary.problems)} problem(s):")
        lines.extend(f"  {label}: {reason}" for label, reason in summary.problems[: 2 * shown])
        if len(summary.problems) > 2 * shown:
            lines.append(f"  ... and {len(summary.problems) - 2 * shown} more")
    lines.append(f"in {summary.seconds:.1f} s")
    return "\n".join(lines) + "\n"
