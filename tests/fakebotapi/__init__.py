"""A fake Telegram Bot API HTTP server the test suite owns (see ``server.py``).

Typical use with python-telegram-bot::

    with FakeBotAPI() as fake:
        bot = telegram.Bot(**fake.bot_kwargs())           # or ApplicationBuilder().base_url(...)
        fake.send_text(user_id=42, text="/start")          # a user writes to the bot
        call = await fake.wait_for_call_async("sendMessage")
        assert call.params["text"] == "hi"

The ``fake_bot_api`` pytest fixture lives in ``tests.fakebotapi.fixtures``.
"""

from .html import HtmlParseError, parse_html
from .server import FILE_DOWNLOAD, ApiCall, ApiError, FakeBotAPI, StoredFile

__all__ = [
    "FILE_DOWNLOAD",
    "ApiCall",
    "ApiError",
    "FakeBotAPI",
    "HtmlParseError",
    "StoredFile",
    "parse_html",
]
