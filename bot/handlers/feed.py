"""The shop's product feed in the running bot: `/sync` (admins: run a sync now and see its
summary; `/sync force` applies a feed the guard refused) and the last sync's line for /stats.
The sync itself is feed.sync's: each of these makes one call and renders what it returns.
The sync every FEED_SYNC_MINUTES is the per-process upkeep's (lookalike.upkeep, scheduled by
bot/jobs.py); the sync's database lease lets one process run it at a time.
"""

from __future__ import annotations

from html import escape

from telegram import Update
from telegram.ext import BaseHandler, CommandHandler, filters

from bot.context import Context
from bot.handlers.admin_common import AS_GIVEN, authorise
from feed import CategoryMapError, last_sync_text, render_summary, sync_feed, sync_options
from lookalike.i18n import ENGLISH, N_, Translator

NO_FEED = N_("No feed is configured: set FEED_URL to the shop's product feed.")
SYNCING = N_("Syncing the catalogue with the shop's feed…")
FORCE_HINT = N_("Send /sync force to apply it anyway.")
TELEGRAM_LIMIT = 3500  # characters of summary shown (a message holds 4096)


async def sync_command(update: Update, context: Context) -> None:
    """/sync [force]"""
    req = await authorise(update, context, "sync")
    if req is None:
        return
    settings = req.services.settings
    if not settings.feed_url:
        await req.fail("sync", None, NO_FEED)
        return
    force = [arg.lower() for arg in context.args or []] == ["force"]
    try:
        options = sync_options(settings, settings.feed_url, force=force)
    except CategoryMapError as exc:
        await req.fail("sync", None, AS_GIVEN, reason=exc)
        return
    await req.reply(escape(req.t(SYNCING)))
    summary = await sync_feed(req.services.engine, options)
    await req.audit("sync", "ok" if summary.status == "ok" else "failed", force=force)
    text = render_summary(summary, t=req.t)
    if len(text) > TELEGRAM_LIMIT:
        text = text[:TELEGRAM_LIMIT] + "\n…"
    hint = "\n" + escape(req.t(FORCE_HINT)) if summary.status == "refused" else ""
    await req.reply(f"<pre>{escape(text, quote=False)}</pre>{hint}")


async def stats_line(context: Context, t: Translator = ENGLISH) -> str:
    """The last sync in the admin's language, escaped for an HTML reply, for /stats to append."""
    engine = context.bot_data.services.engine
    return escape(await engine.run(last_sync_text, engine, t=t), quote=False)


def handlers() -> list[BaseHandler[Update, Context, None]]:
    # block=False: a sync takes minutes; the bot keeps answering everyone meanwhile.
    return [CommandHandler("sync", sync_command, filters=filters.UpdateType.MESSAGE, block=False)]
