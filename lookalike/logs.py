"""Logging for every process: one format, third-party loggers held where they would leak
(URLs with the bot token, customers' updates), and secrets replaced in every record."""

from __future__ import annotations

import logging
import sys
from typing import Any
from urllib.parse import quote

from lookalike.settings import Settings

__all__ = ["LOG_FORMAT", "REDACTED", "configure_logging", "redact_secret_in_logs"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT, stream=sys.stderr)
    # httpx logs every request URL at INFO, and a Bot API URL contains the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # python-telegram-bot logs every update and Bot API call in full at DEBUG: customers'
    # names, messages and photos' file ids. Those stay out of the log even at LOG_LEVEL=DEBUG.
    level = logging.getLevelNamesMapping()[settings.log_level]
    logging.getLogger("telegram").setLevel(max(level, logging.INFO))


REDACTED = "[REDACTED]"
_secrets: set[str] = set()
_base_record_factory = logging.getLogRecordFactory()


def _redact(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, REDACTED)
    return text


def _redacting_record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Every log record, whichever handler gets it, with secrets replaced: the message, its
    arguments and any traceback (e.g. an HTTP error quoting a Bot API URL)."""
    record = _base_record_factory(*args, **kwargs)
    if not _secrets:
        return record
    message = record.getMessage()
    redacted = _redact(message)
    if redacted != message:
        record.msg, record.args = redacted, None
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = _redact(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = _redact(record.stack_info)
    return record


def redact_secret_in_logs(secret: str) -> None:
    """From now on, `secret` (the bot token, the webhook secret) never reaches a log line."""
    if len(secret) < 8:
        return  # too short to be a real secret, and replacing it would mangle every line
    # As written, and as it appears inside URLs (file downloads quote the token's ':').
    _secrets.update({secret, quote(secret, safe=""), quote(secret)})
    logging.setLogRecordFactory(_redacting_record_factory)
