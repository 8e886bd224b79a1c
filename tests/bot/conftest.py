"""End-to-end harness: the real bot Application, polling a fake Bot API on 127.0.0.1, over a
real SQLite copy of the 300-product catalogue and the session's VGG16."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from telegram.ext import Application

from bot.application import build_application, running
from lookalike.settings import Settings
from search import SearchEngine
from search.featurize.featurizer import Featurizer
from tests.conftest import open_test_engine
from tests.fakebotapi import ApiCall, FakeBotAPI

ADMIN_ID = 1001
SUPPORT_ID = 2002
CUSTOMER_ID = 3003
OTHER_CUSTOMER_ID = 3004


@dataclass
class BotHarness:
    """The running bot, the fake Telegram it talks to, and the engine behind it."""

    app: Application  # type: ignore[type-arg]
    api: FakeBotAPI
    engine: SearchEngine
    settings: Settings

    async def wait_for(
        self,
        method: str,
        *,
        after: int = 0,
        predicate: Callable[[ApiCall], bool] | None = None,
        timeout: float = 60.0,
    ) -> ApiCall:
        return await self.api.wait_for_call_async(
            method, after=after, predicate=predicate, timeout=timeout
        )

    async def reply_to(self, chat_id: int, *, after: int, timeout: float = 60.0) -> ApiCall:
        """The next sendMessage to `chat_id`."""
        return await self.wait_for(
            "sendMessage",
            after=after,
            predicate=lambda c: c.ok and str(c.params.get("chat_id")) == str(chat_id),
            timeout=timeout,
        )

    async def handled(self, *, timeout: float = 60.0) -> None:
        """Until every update queued at the fake Bot API so far has been handled, whatever
        order concurrent handling took: the bot's poller has confirmed them (python-telegram-bot
        asks for the next offset only once it has put the earlier updates into the
        Application's update_queue) and the update_queue has no unfinished update (PTB marks one
        done when its handlers have returned). Fails after `timeout` s."""
        await self.api.wait_confirmed_async(timeout=timeout)
        await self.queue_drained(timeout=timeout)

    async def queue_drained(self, *, timeout: float) -> None:
        """Until every update put into the Application's update_queue has been handled."""
        try:
            await asyncio.wait_for(self.app.update_queue.join(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"updates still being handled after {timeout:g} s\n"
                + self.api.describe_calls(after=max(0, self.api.mark() - 10))
            ) from None

    def texts_to(self, chat_id: int, *, after: int = 0) -> list[str]:
        return [
            str(c.params.get("text"))
            for c in self.api.calls[after:]
            if c.method == "sendMessage" and str(c.params.get("chat_id")) == str(chat_id)
        ]


def bot_settings_for(base: Settings, api: FakeBotAPI, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "telegram_bot_token": api.token,
        "telegram_api_base_url": api.base_url,
        "telegram_file_base_url": api.base_file_url,
        "admin_ids": frozenset({ADMIN_ID}),
        "support_ids": frozenset({SUPPORT_ID}),
        "url_fetch_allow_private": True,
        "searches_per_minute": 1000,
    }
    values.update(overrides)
    # Validated again (model_copy would not turn the token into a SecretStr).
    return Settings(_env_file=None, **{**base.model_dump(), **values})  # type: ignore[call-arg]


@pytest.fixture
def bot_settings(catalog_settings: Settings, fake_bot_api: FakeBotAPI) -> Settings:
    return bot_settings_for(catalog_settings, fake_bot_api)


@pytest_asyncio.fixture
async def bot(
    bot_settings: Settings, fake_bot_api: FakeBotAPI, extractor: Featurizer
) -> AsyncIterator[BotHarness]:
    """The bot running (polling) over a private copy of the imported catalogue."""
    engine = open_test_engine(bot_settings, extractor)
    application = build_application(bot_settings, engine=engine)
    async with running(application, poll_timeout=1):
        yield BotHarness(app=application, api=fake_bot_api, engine=engine, settings=bot_settings)
    engine.close()
