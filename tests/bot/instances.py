"""Several bot instances in one test, sharing one database, as behind a load balancer.

Each instance is the real Application with its own SearchEngine (its own in-memory index,
inference worker, job queue), started as in webhook mode: nothing polls the fake Bot API (two
pollers would take each other's updates), the test hands each update to the instance of its
choice with `deliver`, and every instance answers through the fake Bot API over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from telegram import Update

from bot.application import build_application
from lookalike.settings import Settings
from search.featurize.featurizer import Featurizer
from tests.bot.conftest import BotHarness
from tests.conftest import open_test_engine
from tests.fakebotapi import FakeBotAPI

T = TypeVar("T")


@dataclass
class BotInstance(BotHarness):
    name: str = ""

    async def deliver(self, update: dict[str, Any]) -> None:
        """Hand one update (as the fake Bot API made it) to this instance, as its webhook
        would."""
        await self.app.update_queue.put(Update.de_json(update, self.app.bot))

    async def handled(self, *, timeout: float = 60.0) -> None:
        """Until every update delivered to this instance has been handled (nothing polls the
        fake Bot API here: updates go straight into the update_queue)."""
        await self.queue_drained(timeout=timeout)


@contextlib.asynccontextmanager
async def instance(
    settings: Settings, api: FakeBotAPI, extractor: Featurizer, *, name: str = ""
) -> AsyncIterator[BotInstance]:
    """One running instance (initialize, post_init, start; then stop and shut down)."""
    engine = open_test_engine(settings, extractor)
    application = build_application(settings, engine=engine)
    try:
        await application.initialize()
        try:
            assert application.post_init is not None
            await application.post_init(application)
            await application.start()
            try:
                yield BotInstance(
                    app=application, api=api, engine=engine, settings=settings, name=name
                )
            finally:
                await application.stop()
                if application.post_stop:
                    await application.post_stop(application)
        finally:
            await application.shutdown()
    finally:
        engine.close()


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, timeout: float, what: str
) -> tuple[T, float]:
    """The first non-None value of `check()` (tried until `timeout` s), and how long it took."""
    started = time.monotonic()
    while True:
        value = await check()
        if value is not None:
            return value, time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(0.2)
