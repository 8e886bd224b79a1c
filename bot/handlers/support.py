"""Support staff: product links, inline mode, searching an image URL."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler

from bot.context import Context


def handlers() -> list[BaseHandler[Update, Context, None]]:
    return []


def message_handlers() -> list[BaseHandler[Update, Context, None]]:
    """Registered after the customers' photo handler, before the fallbacks."""
    return []
