"""`lookalike bot`: long polling by default, a webhook when WEBHOOK_URL is set."""

from __future__ import annotations

import logging
import secrets

from telegram import Update

from bot.app import MissingTokenError, build_application
from lookalike.app import redact_secret_in_logs
from lookalike.settings import Settings
from search.featurizer import ModelUnavailableError

log = logging.getLogger(__name__)


def run_bot(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM; returns the process exit code."""
    if settings.telegram_bot_token is None or not settings.telegram_bot_token.get_secret_value():
        raise MissingTokenError(
            "TELEGRAM_BOT_TOKEN is not set: get a token from @BotFather and put it in .env "
            "or the environment"
        )
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
