"""Keeping the catalogue in step with the shop's product feed (Google Merchant Center format).

A service the doors call: the command line (`lookalike catalog sync`, cli/sync.py), the bot
(`/sync`, bot/handlers/feed.py) and the schedule of every serving process (lookalike/upkeep.py,
handed the sync by bot/jobs.py or web/serve.py) each read `sync_options(settings, source)`,
make one call, `await sync_feed(engine, options)`, and show `render_summary(summary)`. Inside:
reading the feed (feed.source, feed.formats, feed.items, feed.grouping), the plan (feed.diff),
applying it (feed.apply, feed.images) and what earlier syncs remembered (feed.state).
"""

from feed.categories import CategoryMap, CategoryMapError, load_category_map
from feed.formats import FeedFormatError
from feed.images import FetchOptions
from feed.options import SyncOptions, sync_options
from feed.report import last_sync_text, render_summary, report_lines
from feed.source import FeedSourceError
from feed.sync import ProgressHooks, SyncSummary, sync_feed

__all__ = [
    "CategoryMap",
    "CategoryMapError",
    "FeedFormatError",
    "FeedSourceError",
    "FetchOptions",
    "ProgressHooks",
    "SyncOptions",
    "SyncSummary",
    "last_sync_text",
    "load_category_map",
    "render_summary",
    "report_lines",
    "sync_feed",
    "sync_options",
]
