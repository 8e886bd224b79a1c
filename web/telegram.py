"""The Telegram bot's webhook inside the web server's process (python-telegram-bot's custom
webhook pattern, examples/customwebhookbot.py): when WEBHOOK_URL is set, `lookalike serve`
builds the bot's Application over the same engine, registers the webhook with Telegram, and
this route hands each update Telegram posts to the Application's update queue. One process,
one model, one inference worker for the page, the API and the bot."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from telegram import Update
from telegram.ext import Application

from web.problems import ProblemError

log = logging.getLogger(__name__)

SECRET_HEADER = "x-telegram-bot-api-secret-token"


class TelegramWebhook:
    def __init__(
        self,
        application: Application,  # type: ignore[type-arg]
        *,
        webhook_url: str,
        secret: str,
    ) -> None:
        self.application = application
        self.webhook_url = webhook_url
        self.path = urlsplit(webhook_url).path or "/telegram"
        self._secret = secret

    async def start(self) -> None:
        """What Application.run_webhook does before serving, minus its own web server."""
        application = self.application
        await application.initialize()
        if application.post_init is not None:
            await application.post_init(application)
        await application.bot.set_webhook(
            url=self.webhook_url, secret_token=self._secret, allowed_updates=Update.ALL_TYPES
        )
        await application.start()
        log.info("Telegram webhook registered; updates are taken on %s", self.path)

    async def stop(self) -> None:
        application = self.application
        try:
            if application.running:
                await application.stop()
                if application.post_stop is not None:
                    await application.post_stop(application)
        finally:
            await application.shutdown()

    def router(self) -> APIRouter:
        routes = APIRouter()

        @routes.post(self.path, include_in_schema=False)
        async def telegram_update(request: Request) -> Response:
            given = request.headers.get(SECRET_HEADER, "")
            if not hmac.compare_digest(given.encode(), self._secret.encode()):
                raise ProblemError(403, "wrong or missing secret token", kind="forbidden")
            try:
                data: Any = json.loads(await request.body())
                update = Update.de_json(data, self.application.bot)
            except (ValueError, TypeError, KeyError):
                raise ProblemError(400, "not a Telegram update", kind="bad-request") from None
            if update is None:
                raise ProblemError(400, "not a Telegram update", kind="bad-request")
            await self.application.update_queue.put(update)
            return Response(status_code=200)

        return routes
