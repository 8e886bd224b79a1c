"""The bot side (bot/handlers/feed.py) in the real Application against the fake Bot API:
/sync for admins, the scheduled job, the /stats line."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from bench.fake_shop import ShopItem, ShopServer, feed_bytes
from bot.application import build_application, running
from feed import last_sync_text
from lookalike.settings import Settings
from lookalike.upkeep import FEED_JOB
from search.featurize.featurizer import Featurizer
from tests.bot.conftest import ADMIN_ID, CUSTOMER_ID, BotHarness, bot_settings_for
from tests.conftest import open_test_engine
from tests.fakebotapi import FakeBotAPI


async def start_bot(settings: Settings, api: FakeBotAPI, extractor: Featurizer) -> Any:
    engine = open_test_engine(settings, extractor)
    return engine, build_application(settings, engine=engine)


@pytest_asyncio.fixture
async def feed_bot(
    settings: Settings,
    fake_bot_api: FakeBotAPI,
    extractor: Featurizer,
    shop: ShopServer,
    demo: list[ShopItem],
) -> AsyncIterator[BotHarness]:
    url = shop.publish("/feed.xml", feed_bytes("rss", demo[:6], shop.base))
    bot_settings = bot_settings_for(settings, fake_bot_api, feed_url=url, feed_sync_minutes=600)
    engine, application = await start_bot(bot_settings, fake_bot_api, extractor)
    async with running(application, poll_timeout=1):
        yield BotHarness(app=application, api=fake_bot_api, engine=engine, settings=bot_settings)
    engine.close()


async def say(
    bot: BotHarness, text: str, *, user_id: int = ADMIN_ID, replies: int = 1
) -> list[str]:
    mark = bot.api.mark()
    bot.api.send_text(user_id=user_id, text=text)
    texts: list[str] = []
    after = mark
    for _ in range(replies):
        reply = await bot.reply_to(user_id, after=after, timeout=120)
        texts.append(str(reply.params["text"]))
        after = bot.api.calls.index(reply) + 1
    return texts


async def test_admins_sync_now_and_see_the_summary(
    feed_bot: BotHarness, demo: list[ShopItem]
) -> None:
    started, summary = await say(feed_bot, "/sync", replies=2)
    assert started.startswith("Syncing the catalogue")
    assert summary.startswith("<pre>ok: synced")
    assert "added 6" in summary
    assert {p.sku for p in feed_bot.engine.catalog.products()} == {i.id for i in demo[:6]}


async def test_customers_may_not_sync(feed_bot: BotHarness) -> None:
    (reply,) = await say(feed_bot, "/sync", user_id=CUSTOMER_ID)
    assert reply == "Sorry, this command is only for the shop's admins."
    assert feed_bot.engine.catalog.products() == []


async def test_the_scheduled_job_syncs_and_stats_shows_it(
    feed_bot: BotHarness, demo: list[ShopItem]
) -> None:
    job_queue = feed_bot.app.job_queue
    assert job_queue is not None
    (job,) = job_queue.get_jobs_by_name(FEED_JOB)
    await job.run(feed_bot.app)
    assert {p.sku for p in feed_bot.engine.catalog.products()} == {i.id for i in demo[:6]}
    line = await feed_bot.engine.run(last_sync_text, feed_bot.engine)
    assert line.startswith("Feed sync: ok 0 min ago")
    assert "added 6" in line
    (stats,) = await say(feed_bot, "/stats")
    assert stats.endswith("<b>Product feed</b>\n" + line)


async def test_a_russian_speaking_admin_reads_the_sync_summary_and_stats_line_in_russian(
    feed_bot: BotHarness,
) -> None:
    """The report's frame (status, counts, time) follows the admin's language; the sync's own
    message stays English, as the engine's reasons do."""
    feed_bot.api.add_user(ADMIN_ID, language_code="ru")
    started, summary = await say(feed_bot, "/sync", replies=2)
    assert started == "Синхронизирую каталог с фидом магазина…"
    assert summary.startswith("<pre>успешно: synced\nстрок: 6, товаров: 6, пропущено строк: 0, ")
    assert "добавлено: 6" in summary and "\nдобавить: " in summary
    assert re.search(r"\nза \d+,\d с\n</pre>$", summary), summary
    (stats,) = await say(feed_bot, "/stats")
    feed_line = stats.split("<b>Фид товаров</b>\n")[1]
    assert re.fullmatch(
        r"Синхронизация с фидом: успешно, 0 мин назад \(\d{4}-\d\d-\d\d \d\d:\d\d UTC\): "
        r"добавлено: 6, обновить: 0, изменить наличие: 0, скрыть: 0, вернуть: 0, "
        r"проанализировано фото: 6, фото с ошибкой: 0",
        feed_line,
    ), feed_line
