"""Downloading a photo someone sent: one path for every handler that takes one (customers'
searches, admins' /add). Telegram lets a bot download at most 20 MB."""

from __future__ import annotations

import enum
import logging
from typing import Any

from telegram.error import BadRequest, TelegramError

__all__ = ["MAX_DOWNLOAD_BYTES", "DownloadFailure", "download"]

log = logging.getLogger(__name__)

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024


class DownloadFailure(enum.Enum):
    TOO_LARGE = "too large"  # refused before anything is downloaded when the size is known
    FAILED = "failed"  # Telegram would not give it (5xx, time-out, network trouble)


async def download(bot: Any, file_id: str, size: int | None) -> bytes | DownloadFailure:
    """The file's bytes, or why there are none. `size`: what the message said, if anything."""
    if size is not None and size > MAX_DOWNLOAD_BYTES:
        return DownloadFailure.TOO_LARGE
    try:
        telegram_file = await bot.get_file(file_id)
        if telegram_file.file_size is not None and telegram_file.file_size > MAX_DOWNLOAD_BYTES:
            return DownloadFailure.TOO_LARGE
        return bytes(await telegram_file.download_as_bytearray())
    except BadRequest as exc:
        if "too big" in exc.message.lower():
            return DownloadFailure.TOO_LARGE
        log.warning("could not download a photo: %s", exc)
        return DownloadFailure.FAILED
    except TelegramError as exc:
        log.warning("could not download a photo: %s", exc)
        return DownloadFailure.FAILED
