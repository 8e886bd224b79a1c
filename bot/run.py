"""`lookalike bot`: long polling by default, a webhook when WEBHOOK_URL is set."""

from __future__ import annotations

import logging
import secrets

from telegram import Update

from bot.application import bot_token, build_application
from lookalike.logs import redact_secret_in_logs
from lookalike.settings import Settings
from search import ModelUnavailableError

log = logging.getLogger(__name__)


def run_bot(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM; returns the process exit code. MissingTokenError without a
    token (before anything is opened)."""
    bot_token(settings)
    application = build_application(settings)  # also keeps the token out of every log line
    try:
        if settings.webhook_url:
            secret = (
                settings.webhook_secret_token.get_secret_value()
                if settings.webhook_secret_token
                else secrets.token_urlsafe(32)
            )
            redact_secret_in_logs(secret)
            application.run_webhook(
                listen=settings.webhook_listen,
                port=settings.webhook_port,
                url_path="telegram",
                webhook_url=settings.webhook_url,
                secret_token=secret,
                allowed_updates=Update.ALL_TYPES,
            )
        else:
            application.run_polling(allowed_updates=Update.ALL_TYPES, bootstrap_retries=-1)
    except ModelUnavailableError:
        raise
    log.info("stopped")
    return 0
