"""Admins: keep the catalogue current from a private chat (filled in by the admin work)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler

from bot.context import Context


def handlers() -> list[BaseHandler[Update, Context, None]]:
    return []
