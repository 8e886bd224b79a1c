"""Two bot instances over one database behave as one bot: the search rate limit is shared, an
admin's guided /add may have each step handled by another instance, and a catalogue change
made through one instance shows in the other's results within seconds (the index sync job)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from bot.handlers import admin_add
from bot.jobs import DRAFT_JOB
from db.tables import AdminDraft, AuditEntry, RateLimitEvent
from lookalike.settings import Settings
from lookalike.upkeep import INDEX_SYNC_JOB
from search.featurize.featurizer import Featurizer
from tests.bot.conftest import ADMIN_ID, CUSTOMER_ID, OTHER_CUSTOMER_ID, bot_settings_for
from tests.bot.instances import BotInstance, eventually, instance
from tests.bot.test_admin import altered
from tests.fakebotapi import ApiCall, FakeBotAPI


@contextlib.asynccontextmanager
async def two_instances(
    settings: Settings, api: FakeBotAPI, extractor: Featurizer
) -> AsyncIterator[tuple[BotInstance, BotInstance]]:
    async with (
        instance(settings, api, extractor, name="A") as first,
        instance(settings, api, extractor, name="B") as second,
    ):
        yield first, second


async def text_reply(bot: BotInstance, update: dict[str, object], chat_id: int) -> str:
    """Deliver `update` to `bot`; its next text message to `chat_id`."""
    mark = bot.api.mark()
    await bot.deliver(update)
    reply = await bot.reply_to(chat_id, after=mark)
    return str(reply.params["text"])


async def say(bot: BotInstance, text: str, user_id: int = ADMIN_ID) -> str:
    """A text message to `bot`; its text reply."""
    return await text_reply(bot, bot.api.send_text(user_id=user_id, text=text), user_id)


async def show(bot: BotInstance, image: bytes, user_id: int = ADMIN_ID) -> str:
    """A photo to `bot`; its text reply."""
    return await text_reply(bot, bot.api.send_photo(user_id=user_id, image=image), user_id)


async def photo_search(bot: BotInstance, image: bytes, user_id: int = CUSTOMER_ID) -> ApiCall:
    """A customer's photo through `bot`: the album it answers with."""
    mark = bot.api.mark()
    await bot.deliver(bot.api.send_photo(user_id=user_id, image=image))
    album = await bot.wait_for(
        "sendMediaGroup",
        after=mark,
        predicate=lambda c: c.ok and str(c.params["chat_id"]) == str(user_id),
    )
    await bot.reply_to(user_id, after=album.index)  # the listing follows
    return album


def first_name(album: ApiCall) -> str:
    return str(album.params["media"][0]["caption"].split("\n")[0].split("</b> ", 1)[1])


def rows(bot: BotInstance, model: type[AdminDraft] | type[RateLimitEvent]) -> int:
    with bot.engine.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


# ------------------------------------------------------------------------------- rate limit


async def test_the_search_rate_limit_is_shared_by_instances(
    catalog_settings: Settings, fake_bot_api: FakeBotAPI, extractor: Featurizer, footwear: Path
) -> None:
    settings = bot_settings_for(catalog_settings, fake_bot_api, searches_per_minute=2)
    image = (footwear / "queries" / "search_image_01.jpg").read_bytes()
    async with two_instances(settings, fake_bot_api, extractor) as (a, b):
        await photo_search(a, image)
        await photo_search(b, image)
        # Two searches in the minute, one through each: the third is refused by either.
        for bot in (a, b):
            text = await text_reply(
                bot, bot.api.send_photo(user_id=CUSTOMER_ID, image=image), CUSTOMER_ID
            )
            assert "wait" in text and "try again" in text
        # Someone else is not limited by it, on either instance.
        await photo_search(b, image, user_id=OTHER_CUSTOMER_ID)
        await photo_search(a, image, user_id=OTHER_CUSTOMER_ID)
        albums = [
            c
            for c in fake_bot_api.calls_to("sendMediaGroup")
            if str(c.params["chat_id"]) == str(CUSTOMER_ID)
        ]
        assert len(albums) == 2
        assert rows(a, RateLimitEvent) == 4  # refused searches are not counted

        # A minute later the window has moved on: events are pruned, searching works again.
        with a.engine.sessions() as session:
            session.execute(
                update(RateLimitEvent).values(created_at=datetime.now(UTC) - timedelta(seconds=61))
            )
            session.commit()
        await photo_search(b, image)
        assert rows(a, RateLimitEvent) == 1


# ------------------------------------------------------------------- the guided /add, shared


async def test_guided_add_steps_may_reach_different_instances(
    catalog_settings: Settings,
    fake_bot_api: FakeBotAPI,
    extractor: Featurizer,
    catalog_photos: list[Path],
) -> None:
    settings = bot_settings_for(catalog_settings, fake_bot_api, index_sync_seconds=0.5)
    api = fake_bot_api
    photo = altered(catalog_photos[40], quality=70, scale=0.9)
    async with two_instances(settings, api, extractor) as (a, b):
        # /add on A, the photo on B, a bad line on A (refused, the draft waits), then the
        # details on B: added.
        assert "photo" in await say(a, "/add")
        assert "details" in await show(b, photo)
        refused = await say(a, "MULTI-1 | | 9")
        assert "the name is empty" in refused
        added = await say(b, "MULTI-1 | Shared Boot | 80 | | boots")
        assert "Added <b>MULTI-1</b>" in added
        assert rows(a, AdminDraft) == 0
        new = b.engine.catalog.get("MULTI-1")
        assert new is not None and new.category == "boots"

        # Added through B, found through A once A's index has synced (a couple of seconds).
        async def found_on_a() -> str | None:
            album = await photo_search(a, photo)
            return first_name(album) if first_name(album) == "Shared Boot" else None

        _, elapsed = await eventually(found_on_a, timeout=15, what="MULTI-1 searchable on A")
        print(f"added on B, found on A after {elapsed:.1f} s")
        assert a.app.job_queue is not None and a.app.job_queue.get_jobs_by_name(INDEX_SYNC_JOB)

        # The details first (on B), the photo on A.
        reply = await say(b, "/add MULTI-2 | Second | 81.50")
        assert "photo" in reply
        photo2 = altered(catalog_photos[41], quality=70)
        assert "Added <b>MULTI-2</b>" in await show(a, photo2)

        # /add on A, /cancel on B: the draft is gone, the next photo on A is a search.
        assert "photo" in await say(a, "/add")
        assert "Cancelled" in await say(b, "/cancel")
        assert rows(a, AdminDraft) == 0
        album = await photo_search(a, altered(catalog_photos[42]), user_id=ADMIN_ID)
        assert album.ok
        # Without a draft, /cancel is just an unknown command.
        assert "don't know that command" in await say(b, "/cancel")

        with a.engine.sessions() as session:
            audit = session.execute(
                select(AuditEntry.action, AuditEntry.target, AuditEntry.outcome).order_by(
                    AuditEntry.id
                )
            ).all()
        assert [tuple(row) for row in audit] == [
            ("add", "MULTI-1", "failed"),
            ("add", "MULTI-1", "ok"),
            ("add", "MULTI-2", "ok"),
            ("add", None, "failed"),  # cancelled
        ]


async def test_an_expired_draft_is_dropped_and_the_admin_told(
    catalog_settings: Settings,
    fake_bot_api: FakeBotAPI,
    extractor: Featurizer,
    catalog_photos: list[Path],
) -> None:
    settings = bot_settings_for(catalog_settings, fake_bot_api)
    api = fake_bot_api
    long_ago = datetime.now(UTC) - timedelta(seconds=admin_add.CONVERSATION_TIMEOUT_SECONDS + 5)

    def age_drafts(bot: BotInstance) -> None:
        with bot.engine.sessions() as session:
            session.execute(update(AdminDraft).values(updated_at=long_ago))
            session.commit()

    async with two_instances(settings, api, extractor) as (a, b):
        # The next message after the timeout: told, and handled as if there were no draft
        # (a photo is an ordinary search).
        await say(a, "/add SKU-X | X | 10")
        age_drafts(a)
        mark = api.mark()
        album = await photo_search(b, altered(catalog_photos[43]), user_id=ADMIN_ID)
        assert album.ok
        assert any("timed out" in text for text in b.texts_to(ADMIN_ID, after=mark))
        assert rows(a, AdminDraft) == 0

        # Nobody writes: the sweep job (on whichever instance runs it first) says so, once.
        await say(b, "/add")
        age_drafts(a)
        mark = api.mark()
        for bot in (a, b):
            assert bot.app.job_queue is not None
            (job,) = bot.app.job_queue.get_jobs_by_name(DRAFT_JOB)
            await job.run(bot.app)
        told = [text for text in a.texts_to(ADMIN_ID, after=mark) if "timed out" in text]
        assert len(told) == 1
        assert rows(a, AdminDraft) == 0
        with a.engine.sessions() as session:
            errors = session.scalars(
                select(AuditEntry.details).where(AuditEntry.outcome == "failed")
            ).all()
        assert [d["error"] for d in errors] == ["timed out", "timed out"]


@pytest.mark.parametrize("step", ["photo", "details"])
async def test_two_messages_racing_for_one_draft_add_once(
    catalog_settings: Settings,
    fake_bot_api: FakeBotAPI,
    extractor: Featurizer,
    catalog_photos: list[Path],
    step: str,
) -> None:
    """The same last step reaching both instances at once: one takes the draft and adds; the
    other finds it taken (nothing happens) or gone (an ordinary message then)."""
    settings = bot_settings_for(catalog_settings, fake_bot_api)
    api = fake_bot_api
    async with two_instances(settings, api, extractor) as (a, b):
        if step == "photo":
            await say(a, "/add RACE-1 | R | 5")
            images = [altered(catalog_photos[50 + i]) for i in range(2)]
            last = [api.send_photo(user_id=ADMIN_ID, image=image) for image in images]
        else:
            await say(a, "/add")
            await show(b, altered(catalog_photos[50]))
            last = [api.send_text(user_id=ADMIN_ID, text="RACE-1 | R | 5") for _ in range(2)]
        mark = api.mark()
        await a.deliver(last[0])
        await b.deliver(last[1])
        await a.wait_for(
            "sendMessage", after=mark, predicate=lambda c: "Added" in str(c.params.get("text"))
        )
        await asyncio.gather(a.handled(), b.handled())  # the other instance's handling too
        added = [t for t in a.texts_to(ADMIN_ID, after=mark) if "Added" in t]
        assert len(added) == 1
        product = a.engine.catalog.get("RACE-1")
        assert product is not None and len(product.images) == 1
