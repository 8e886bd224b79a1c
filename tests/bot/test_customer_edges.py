"""Customers at the edges, end to end over the fake Bot API: anything that is not a photo,
catalogues of none to three products, the search rate limit, Telegram's faults (429, 502, a
blocked user) and /start while searches run. The happy paths are in test_customer.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.handlers import customer
from lookalike.settings import Settings
from search.featurize.featurizer import Featurizer
from search.fields import clean_product_fields
from tests import images
from tests.bot.conftest import CUSTOMER_ID, OTHER_CUSTOMER_ID, BotHarness, bot_settings_for
from tests.bot.test_customer import (
    PHOTO_METHODS,
    callback_data,
    calls_to_chat,
    harness,
    is_listing,
    query_image,
    reply_text,
    results,
    search,
    settle,
    to_chat,
)
from tests.fakebotapi import FILE_DOWNLOAD, FakeBotAPI

# ------------------------------------------------------------------------- anything else


async def test_anything_else_gets_a_short_helpful_reply(
    bot: BotHarness, footwear: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    api = bot.api
    jpeg = query_image(footwear)
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: api.send_text(user_id=CUSTOMER_ID, text="do you have red boots?"), "photo"),
        (lambda: api.send_text(user_id=CUSTOMER_ID, text="/nonsense"), "/help"),
        (lambda: api.send_sticker(user_id=CUSTOMER_ID), "sticker"),
        (lambda: api.send_voice(user_id=CUSTOMER_ID), "photo"),
        (
            lambda: api.send_document(
                user_id=CUSTOMER_ID,
                data=images.minimal_pdf(),
                file_name="catalogue.pdf",
                mime_type="application/pdf",
            ),
            "isn't an image",
        ),
        (
            lambda: api.send_document(
                user_id=CUSTOMER_ID,
                data=jpeg,
                file_name="huge.jpg",
                mime_type="image/jpeg",
                file_size=25 * 1024 * 1024,
            ),
            "too large",
        ),
        (lambda: api.send_photo(user_id=CUSTOMER_ID, image=images.truncated(jpeg)), "read"),
        (
            lambda: api.send_document(
                user_id=CUSTOMER_ID, data=b"", file_name="empty.jpg", mime_type="image/jpeg"
            ),
            "empty",
        ),
        (
            lambda: api.send_document(
                user_id=CUSTOMER_ID,
                data=images.plain_text(),
                file_name="photo.jpg",
                mime_type="image/jpeg",
            ),
            "read",
        ),
        (lambda: api.send_photo(user_id=CUSTOMER_ID, image=images.heic_header()), "read"),
        (
            lambda: api.send_document(
                user_id=CUSTOMER_ID,
                data=images.elf_executable(),
                file_name="holiday.jpg",
                mime_type="image/jpeg",
            ),
            "read",
        ),
    ]
    for send, expected in cases:
        mark = api.mark()
        send()
        text = await reply_text(bot, CUSTOMER_ID, after=mark)
        assert expected in text, (expected, text)
        assert text != customer.SEARCH_FAILED
        assert len(text) < 300
        if expected == "too large":
            assert not [c for c in api.calls[mark:] if c.method in ("getFile", FILE_DOWNLOAD)]
    assert not [c for c in api.calls if c.method in PHOTO_METHODS]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# ---------------------------------------------------------------- small catalogues, limits


async def test_small_catalogue_none_one_and_three_products(
    settings: Settings, fake_bot_api: FakeBotAPI, extractor: Featurizer, catalog_photos: list[Path]
) -> None:
    query = images.encode(images.photo_like(120, 90), "JPEG")
    async with harness(bot_settings_for(settings, fake_bot_api), fake_bot_api, extractor) as bot:
        mark = bot.api.mark()
        bot.api.send_photo(user_id=CUSTOMER_ID, image=query)
        assert "No matching products" in await reply_text(bot, CUSTOMER_ID, after=mark)

        def add(index: int) -> None:
            fields = clean_product_fields(
                sku=f"SKU-{index}", name=f"Shoe #{index}", price="20", currency="EUR"
            )
            bot.engine.catalog.add(fields, catalog_photos[index].read_bytes())

        await asyncio.to_thread(add, 0)
        photo, listing = await search(bot, query)
        assert photo.method == "sendPhoto"
        assert photo.params["caption"].startswith("<b>1.</b> Shoe #0")
        assert len(listing.params["text"].splitlines()) == 2

        for index in (1, 2):
            await asyncio.to_thread(add, index)
        album, listing = await search(bot, query)
        assert album.method == "sendMediaGroup" and len(album.params["media"]) == 3
        assert len(listing.params["text"].splitlines()) == 4
        # Buttons still make sense: nothing is cheaper than 20 among three products at 20.
        mark = bot.api.mark()
        bot.api.press_button(
            user_id=CUSTOMER_ID, message=listing, data=callback_data(listing, "cheaper:")
        )
        assert await reply_text(bot, CUSTOMER_ID, after=mark) == customer.NOTHING_CHEAPER


async def test_searches_per_minute_limit_is_polite(
    catalog_settings: Settings, fake_bot_api: FakeBotAPI, extractor: Featurizer, footwear: Path
) -> None:
    settings = bot_settings_for(catalog_settings, fake_bot_api, searches_per_minute=2)
    async with harness(settings, fake_bot_api, extractor) as bot:
        await search(bot, query_image(footwear))
        _, listing = await search(bot, query_image(footwear))
        mark = bot.api.mark()
        bot.api.send_photo(user_id=CUSTOMER_ID, image=query_image(footwear))
        text = await reply_text(bot, CUSTOMER_ID, after=mark)
        assert "wait" in text and "try again" in text
        # The "cheaper"/"all" buttons count as searches too; feedback does not.
        mark = bot.api.mark()
        bot.api.press_button(
            user_id=CUSTOMER_ID, message=listing, data=callback_data(listing, "fb:")
        )
        answer = await bot.wait_for("answerCallbackQuery", after=mark)
        assert "Thanks" in answer.params["text"]
        # Someone else is not limited by it.
        await search(bot, query_image(footwear), user_id=OTHER_CUSTOMER_ID)
        assert not [
            c for c in bot.api.calls[mark:] if to_chat(CUSTOMER_ID)(c) and c.method in PHOTO_METHODS
        ]


# ------------------------------------------------------------------------ Telegram faults


async def test_429_on_the_album_is_waited_out_and_one_album_arrives(
    bot: BotHarness, footwear: Path
) -> None:
    bot.api.fail_next("sendMediaGroup", status=429, retry_after=3)
    mark = bot.api.mark()
    bot.api.send_photo(user_id=CUSTOMER_ID, image=query_image(footwear))
    album, listing = await results(bot, CUSTOMER_ID, after=mark)
    assert len(album.params["media"]) == 8
    attempts = [c for c in bot.api.calls_to("sendMediaGroup") if c.index >= mark]
    assert [c.failed_status for c in attempts] == [429, None]
    assert attempts[1].at - attempts[0].answered_at >= 3.0
    await settle(bot)
    listings = [c for c in bot.api.calls[mark:] if is_listing(CUSTOMER_ID)(c)]
    assert listings == [listing]


@pytest.mark.parametrize("method", ["getFile", FILE_DOWNLOAD])
async def test_502_while_fetching_the_photo_asks_to_try_again(
    bot: BotHarness, footwear: Path, method: str
) -> None:
    bot.api.fail_next(method, status=502)
    mark = bot.api.mark()
    bot.api.send_photo(user_id=CUSTOMER_ID, image=query_image(footwear))
    text = await reply_text(bot, CUSTOMER_ID, after=mark)
    assert text == customer.DOWNLOAD_FAILED and "try again" in text
    # And trying again works.
    await search(bot, query_image(footwear))


async def test_blocked_user_causes_no_retry_storm_and_next_user_is_served(
    bot: BotHarness, footwear: Path
) -> None:
    # Blocked before the reply: the album fails with 403, once; nothing else is tried.
    bot.api.block_bot(CUSTOMER_ID)
    mark = bot.api.mark()
    bot.api.send_photo(user_id=CUSTOMER_ID, image=query_image(footwear))
    await bot.wait_for("sendMediaGroup", after=mark, predicate=to_chat(CUSTOMER_ID))
    await search(bot, query_image(footwear), user_id=OTHER_CUSTOMER_ID)
    await settle(bot)
    to_blocked = calls_to_chat(bot, CUSTOMER_ID, after=mark)
    assert all(c.failed_status == 403 for c in to_blocked)
    assert [c.method for c in to_blocked if c.method != "sendChatAction"] == ["sendMediaGroup"]
    assert len(to_blocked) <= 2

    # Blocked in the middle of a reply: the album arrived, the listing gets 403.
    bot.api.block_bot(CUSTOMER_ID, blocked=False)
    bot.api.fail_next(
        "sendMessage", status=403, description="Forbidden: bot was blocked by the user"
    )
    mark = bot.api.mark()
    bot.api.send_photo(user_id=CUSTOMER_ID, image=query_image(footwear))
    failed = await bot.wait_for("sendMessage", after=mark, predicate=lambda c: not c.ok)
    assert failed.failed_status == 403
    await search(bot, query_image(footwear), user_id=OTHER_CUSTOMER_ID)
    await settle(bot)
    sends = [c for c in calls_to_chat(bot, CUSTOMER_ID, after=mark) if c.method == "sendMessage"]
    assert sends == [failed]


async def test_start_is_answered_while_searches_run(bot: BotHarness, footwear: Path) -> None:
    users = [5001, 5002, 5003, 5004, 5005]
    mark = bot.api.mark()
    for user_id in users:
        bot.api.send_photo(user_id=user_id, image=query_image(footwear, "search_image_02.jpg"))
    bot.api.send_text(user_id=OTHER_CUSTOMER_ID, text="/start")
    start = await bot.reply_to(OTHER_CUSTOMER_ID, after=mark)
    albums = [await results(bot, user_id, after=mark) for user_id in users]
    assert all(len(album.params["media"]) == 8 for album, _ in albums)
    assert start.index < max(album.index for album, _ in albums)
