"""`lookalike catalog sync SOURCE [--dry-run] [--force] [--report FILE]`: the command-line
door of the feed sync. Parses, makes one call into the feed service (`feed.sync_feed`),
renders its summary (and, with --report, every problem to a file).

Wiring (cli/main.py): `cli.sync.register(catalog_subparsers)` adds the `sync` action with
`handler=cli.sync.run`; `run(args, settings)` returns the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TextIO

from cli.common import ProgressBar
from feed import (
    CategoryMapError,
    ProgressHooks,
    render_summary,
    report_lines,
    sync_feed,
    sync_options,
)
from lookalike.settings import Settings

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_REFUSED = 3  # the guard refused the feed, or another sync holds the lease


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
    sync.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help="write every skipped row and failed photo, with why, to FILE (tab-separated)",
    )
    sync.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sync.set_defaults(handler=run)


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
    from lookalike.composition import open_engine

    engine = open_engine(settings)
    try:
        with ProgressBar("photos", quiet=args.quiet) as bar:
            hooks = ProgressHooks(bar.on_total, bar.advance)
            summary = asyncio.run(sync_feed(engine, options, progress=hooks))
    finally:
        engine.close()
    out.write(render_summary(summary))
    if args.report is not None:
        try:
            with args.report.open("w", encoding="utf-8") as handle:
                handle.writelines(report_lines(summary.problems))
        except OSError as exc:
            print(f"error: cannot write the report {args.report}: {exc.strerror}", file=sys.stderr)
            return EXIT_ERROR
        out.write(f"report of {len(summary.problems)} problem(s): {args.report}\n")
    if summary.status in ("ok", "dry-run"):
        return EXIT_OK
    return EXIT_REFUSED if summary.status in ("refused", "busy") else EXIT_ERROR
