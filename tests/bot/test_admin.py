"""Admin commands, end to end: the real Application over HTTP against the fake Bot API, over a
copy of the 300-product catalogue. Nothing is mocked: adds go through the inference worker,
the media store, the database and the index."""

from __future__ import annotations

import asyncio
import io
import re
import time
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import func, select

from bot.handlers.admin import stats_text
from bot.handlers.admin_common import NOT_ADMIN, NOT_PRIVATE
from db.tables import AuditEntry, Product
from search import import_directory
from tests.bot.conftest import ADMIN_ID, CUSTOMER_ID, SUPPORT_ID, BotHarness
from tests.fakebotapi import ApiCall

GROUP_ID = -100777


def altered(path: Path, *, quality: int = 85, scale: float = 1.0) -> bytes:
    """A catalogue photo re-encoded (and optionally resized): new bytes, same look."""
    image = Image.open(path).convert("RGB")
    if scale != 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def png_of(path: Path) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def sku_of(path: Path) -> str:
    return path.stem  # the import names products after their file


async def say(
    bot: BotHarness,
    text: str,
    *,
    user_id: int = ADMIN_ID,
    chat_id: int | None = None,
    chat_type: str = "private",
) -> str:
    """Send a text message and return the bot's next text reply in that chat."""
    mark = bot.api.mark()
    bot.api.send_text(user_id=user_id, text=text, chat_id=chat_id, chat_type=chat_type)
    reply = await bot.reply_to(user_id if chat_id is None else chat_id, after=mark)
    assert reply.ok, reply.description
    return str(reply.params["text"])


async def send_photo(
    bot: BotHarness,
    image: bytes,
    caption: str | None,
    *,
    user_id: int = ADMIN_ID,
    chat_id: int | None = None,
    chat_type: str = "private",
) -> str:
    mark = bot.api.mark()
    bot.api.send_photo(
        user_id=user_id, image=image, caption=caption, chat_id=chat_id, chat_type=chat_type
    )
    reply = await bot.reply_to(user_id if chat_id is None else chat_id, after=mark)
    assert reply.ok, reply.description
    return str(reply.params["text"])


async def search(bot: BotHarness, image: bytes) -> tuple[list[str], ApiCall]:
    """A customer's photo search: the product names of the album, in order, and the listing."""
    mark = bot.api.mark()
    bot.api.send_photo(user_id=CUSTOMER_ID, image=image)
    album = await bot.wait_for("sendMediaGroup", after=mark)
    assert album.ok, album.description
    names = []
    for item in album.params["media"]:
        first_line = item["caption"].split("\n")[0]
        match = re.fullmatch(r"<b>\d+\.</b> (.*)", first_line)
        assert match, first_line
        names.append(match.group(1))
    listing = await bot.reply_to(CUSTOMER_ID, after=album.index)
    return names, listing


def audit_rows(bot: BotHarness) -> list[tuple[int, str, str | None, str]]:
    with bot.engine.sessions() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        return [(row.user_id, row.action, row.target, row.outcome) for row in rows]


def audit_details(bot: BotHarness) -> list[dict[str, Any]]:
    with bot.engine.sessions() as session:
        return [
            dict(d) for d in session.scalars(select(AuditEntry.details).order_by(AuditEntry.id))
        ]


async def file_id_stored(bot: BotHarness, sku: str, *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        product = bot.engine.catalog.get(sku)
        if product is not None and product.images[0].telegram_file_id:
            return
        assert time.monotonic() < deadline, f"no file_id stored for {sku}"
        await asyncio.sleep(0.05)


def product_count(bot: BotHarness) -> int:
    with bot.engine.sessions() as session:
        return int(session.scalar(select(func.count(Product.id))) or 0)


async def test_add_captioned_photo_is_stored_searchable_and_warns_of_near_duplicate(
    bot: BotHarness, catalog_photos: list[Path]
) -> None:
    original = catalog_photos[10]
    photo = altered(original, quality=80, scale=0.9)
    reply = await send_photo(
        bot, photo, "/add NEW-1 | Trail Runner | 59.90 | https://shop.example/p/new-1 | sneakers"
    )
    assert "Added <b>NEW-1</b>" in reply
    assert "customers can find it now" in reply
    assert "looks almost the same as" in reply and f"<b>{sku_of(original)}</b>" in reply
    assert "Trail Runner" in reply and "€59.90" in reply and "Status: in stock" in reply

    # Stored everywhere: database row, image file, vector in the index.
    product = bot.engine.catalog.get("NEW-1")
    assert product is not None and product.active
    assert product.name == "Trail Runner" and str(product.price) == "59.90"
    assert product.url == "https://shop.example/p/new-1" and product.category == "sneakers"
    assert len(product.images) == 1
    assert bot.engine.media.path_for(product.images[0].file_name).read_bytes() == photo
    assert bot.engine.models.index.product_vectors(product.id).shape == (1, 512)
    # The admin's photo is these exact bytes: its file_id is kept for customers' albums.
    assert product.images[0].telegram_file_id

    # A customer searching with that photo gets the new product first.
    names, _ = await search(bot, photo)
    assert names[0] == "Trail Runner"

    assert audit_rows(bot) == [(ADMIN_ID, "add", "NEW-1", "ok")]
    assert audit_details(bot)[0]["near_duplicates"][0] == sku_of(original)


async def test_guided_add_conversation_and_cancel(
    bot: BotHarness, catalog_photos: list[Path]
) -> None:
    assert "photo" in await say(bot, "/add")
    mark = bot.api.mark()
    bot.api.send_photo(user_id=ADMIN_ID, image=altered(catalog_photos[20]))
    ask = await bot.reply_to(ADMIN_ID, after=mark)
    assert "details" in ask.params["text"]
    # A bad line is refused with the reason; the conversation waits for a better one.
    assert "the name is empty" in await say(bot, "GUIDE-1 |  | 80")
    reply = await say(bot, "GUIDE-1 | Guided Boot | 80 | | boots")
    assert "Added <b>GUIDE-1</b>" in reply
    guided = bot.engine.catalog.get("GUIDE-1")
    assert guided is not None and guided.category == "boots" and guided.url is None

    # The details first (typed with /add), then the photo.
    assert "photo" in await say(bot, "/add GUIDE-2 | Second Boot | 81.50")
    assert "Added <b>GUIDE-2</b>" in await send_photo(bot, altered(catalog_photos[21]), None)

    # An image file captioned just /add starts the conversation too.
    mark = bot.api.mark()
    bot.api.send_document(
        user_id=ADMIN_ID,
        data=png_of(catalog_photos[23]),
        file_name="boot.png",
        mime_type="image/png",
        caption="/add",
    )
    assert "details" in (await bot.reply_to(ADMIN_ID, after=mark)).params["text"]
    assert "Added <b>GUIDE-3</b>" in await say(bot, "GUIDE-3 | Doc Boot | 70")

    # /cancel stops; the next photo is an ordinary search again.
    assert "photo" in await say(bot, "/add")
    assert "Cancelled" in await say(bot, "/cancel")
    mark = bot.api.mark()
    bot.api.send_photo(user_id=ADMIN_ID, image=altered(catalog_photos[22]))
    album = await bot.wait_for("sendMediaGroup", after=mark)
    assert album.ok and str(album.params["chat_id"]) == str(ADMIN_ID)
    assert product_count(bot) == 303

    rows = audit_rows(bot)
    assert rows == [
        (ADMIN_ID, "add", "GUIDE-1", "failed"),
        (ADMIN_ID, "add", "GUIDE-1", "ok"),
        (ADMIN_ID, "add", "GUIDE-2", "ok"),
        (ADMIN_ID, "add", "GUIDE-3", "ok"),
        (ADMIN_ID, "add", None, "failed"),  # cancelled
    ]


async def test_photo_for_existing_sku_adds_an_image(
    bot: BotHarness, catalog_photos: list[Path]
) -> None:
    sku = sku_of(catalog_photos[5])
    reply = await send_photo(bot, altered(catalog_photos[5], scale=0.8), f"/add {sku}")
    assert f"Added another photo to <b>{sku}</b> (2 photos now)" in reply
    # An image file (PNG document) works too; typed details do not overwrite the product.
    mark = bot.api.mark()
    bot.api.send_document(
        user_id=ADMIN_ID,
        data=png_of(catalog_photos[5]),
        file_name="side.png",
        mime_type="image/png",
        caption=f"/add {sku} | Another Name | 10",
    )
    reply_call = await bot.reply_to(ADMIN_ID, after=mark)
    assert "(3 photos now)" in reply_call.params["text"]
    assert "details you typed were not applied" in reply_call.params["text"]
    product = bot.engine.catalog.get(sku)
    assert product is not None and len(product.images) == 3
    assert product.name != "Another Name"
    assert bot.engine.models.index.product_vectors(product.id).shape[0] == 3
    assert product_count(bot) == 300
    # The same bytes again: nothing changes. A bare unknown SKU is refused.
    again = await send_photo(bot, altered(catalog_photos[5], scale=0.8), f"/add {sku}")
    assert "already an image" in again
    assert "no product NOPE-1" in await send_photo(bot, altered(catalog_photos[6]), "/add NOPE-1")
    assert [row[3] for row in audit_rows(bot)] == ["ok", "ok", "ok", "failed"]


async def test_remove_restore_stock_and_product_card(
    bot: BotHarness, catalog_photos: list[Path]
) -> None:
    photo_path = catalog_photos[3]
    sku = sku_of(photo_path)
    query = photo_path.read_bytes()
    product = bot.engine.catalog.get(sku)
    assert product is not None
    name = product.name
    # /product: the first photo with the staff card; uploaded once, then by file_id.
    for expected_source in ("upload", "file_id"):
        mark = bot.api.mark()
        bot.api.send_text(user_id=ADMIN_ID, text=f"/product {sku}")
        card = await bot.wait_for("sendPhoto", after=mark)
        assert card.ok, card.description
        assert card.photo_sources() == [expected_source]
        caption = card.params["caption"]
        assert f"SKU {sku}" in caption and "Status: in stock" in caption
        assert f"id {product.id}" in caption and "1 image ·" in caption
        await file_id_stored(bot, sku)  # the bot keeps it just after the upload's answer
    names, _ = await search(bot, query)
    assert names[0] == name

    reply = await say(bot, f"/remove {sku}")
    assert "is removed" in reply
    names, listing = await search(bot, query)
    assert name not in names and name not in listing.params["text"]
    stored = bot.engine.catalog.get(sku)
    assert stored is not None and stored.removed  # kept in the database

    assert "customers can find it again" in await say(bot, f"/restore {sku}")
    names, _ = await search(bot, query)
    assert names[0] == name

    assert "out of stock" in await say(bot, f"/stock {sku} out")
    names, _ = await search(bot, query)
    assert name not in names
    assert "customers can find it again" in await say(bot, f"/stock {sku} IN")
    names, _ = await search(bot, query)
    assert names[0] == name

    # Usage help and unknown SKUs.
    assert "Usage: /remove SKU" in await say(bot, "/remove")
    assert "Usage: /stock SKU in|out" in await say(bot, f"/stock {sku} maybe")
    assert "Usage: /product SKU" in await say(bot, "/product")
    assert "no product with SKU" in await say(bot, "/remove NOPE-404")
    assert "no product with SKU" in await say(bot, "/product NOPE-404")

    assert audit_rows(bot) == [
        (ADMIN_ID, "product", sku, "ok"),
        (ADMIN_ID, "product", sku, "ok"),
        (ADMIN_ID, "remove", sku, "ok"),
        (ADMIN_ID, "restore", sku, "ok"),
        (ADMIN_ID, "stock", sku, "ok"),
        (ADMIN_ID, "stock", sku, "ok"),
        (ADMIN_ID, "remove", None, "failed"),
        (ADMIN_ID, "stock", sku, "failed"),
        (ADMIN_ID, "product", None, "failed"),
        (ADMIN_ID, "remove", "NOPE-404", "failed"),
        (ADMIN_ID, "product", "NOPE-404", "failed"),
    ]


async def test_non_admins_and_group_chats_are_refused_and_audited(
    bot: BotHarness, catalog_photos: list[Path]
) -> None:
    sku = sku_of(catalog_photos[1])
    bot.api.add_user(CUSTOMER_ID, username="admin")  # usernames mean nothing
    assert await say(bot, f"/remove {sku}", user_id=CUSTOMER_ID) == NOT_ADMIN
    assert await say(bot, "/stats", user_id=SUPPORT_ID) == NOT_ADMIN
    assert await say(bot, f"/stock {sku} out", user_id=SUPPORT_ID) == NOT_ADMIN
    refused = await send_photo(
        bot, altered(catalog_photos[2]), "/add EVIL-1 | Evil | 1", user_id=CUSTOMER_ID
    )
    assert refused == NOT_ADMIN
    # /add alone does not start a conversation for a customer: a photo is still a search.
    assert await say(bot, "/add", user_id=CUSTOMER_ID) == NOT_ADMIN
    mark = bot.api.mark()
    bot.api.send_photo(user_id=CUSTOMER_ID, image=catalog_photos[2].read_bytes())
    assert (await bot.wait_for("sendMediaGroup", after=mark)).ok

    # The admin in a group: refused there, nothing done.
    group = {"chat_id": GROUP_ID, "chat_type": "group"}
    assert await say(bot, f"/remove {sku}", **group) == NOT_PRIVATE
    assert await send_photo(bot, altered(catalog_photos[2]), "/add GRP-1 | G | 1", **group) == (
        NOT_PRIVATE
    )

    product = bot.engine.catalog.get(sku)
    assert product is not None and product.active
    assert bot.engine.catalog.get("EVIL-1") is None and bot.engine.catalog.get("GRP-1") is None
    assert product_count(bot) == 300
    assert audit_rows(bot) == [
        (CUSTOMER_ID, "remove", sku, "refused"),
        (SUPPORT_ID, "stats", None, "refused"),
        (SUPPORT_ID, "stock", sku, "refused"),
        (CUSTOMER_ID, "add", "EVIL-1", "refused"),
        (CUSTOMER_ID, "add", None, "refused"),
        (ADMIN_ID, "remove", sku, "refused"),
        (ADMIN_ID, "add", "GRP-1", "refused"),
    ]
    reasons = [d["reason"] for d in audit_details(bot)]
    assert reasons == ["not_admin"] * 5 + ["not_private"] * 2


async def test_bad_input_is_refused_with_the_reason_or_stored_verbatim_and_escaped(
    bot: BotHarness, catalog_photos: list[Path]
) -> None:
    photo = altered(catalog_photos[30])
    assert "the price 'abc' is not a number" in await send_photo(
        bot, photo, "/add BAD-1 | Shoe | abc"
    )
    assert "the name is empty" in await send_photo(bot, photo, "/add BAD-2 |   | 10")
    long_reply = await send_photo(bot, photo, "/add BAD-3 | " + "x" * 5000 + " | 10")
    assert "at most 200" in long_reply and len(long_reply) < 500
    assert "price is missing" in await send_photo(bot, photo, "/add BAD-4 | Shoe")
    # Markup in a refused field comes back escaped (the fake rejects invalid HTML with 400).
    assert "SKU must be" in await send_photo(bot, photo, "/add <i>x</i> | Shoe | 10")
    assert "http:// or https://" in await send_photo(
        bot, photo, "/add BAD-5 | Shoe | 10 | javascript:alert(1)"
    )

    sql = "x'; DROP TABLE products; --"
    reply = await send_photo(bot, photo, f"/add SQL-1 | {sql} | 10")
    assert "Added <b>SQL-1</b>" in reply and "x&#x27;; DROP TABLE products; --" in reply
    html_name = "<b>bold</b><script>"
    reply = await send_photo(bot, altered(catalog_photos[31]), f"/add HTML-1 | {html_name} | 10")
    assert "&lt;b&gt;bold&lt;/b&gt;&lt;script&gt;" in reply
    for sku, name in (("SQL-1", sql), ("HTML-1", html_name)):
        stored = bot.engine.catalog.get(sku)
        assert stored is not None and stored.name == name
    assert product_count(bot) == 302
    mark = bot.api.mark()
    bot.api.send_text(user_id=ADMIN_ID, text="/product HTML-1")
    card = await bot.wait_for("sendPhoto", after=mark)
    assert card.ok, card.description
    assert card.photo_sources() == ["file_id"]  # the admin's own upload, never re-sent

    mark = bot.api.mark()
    bot.api.send_document(
        user_id=ADMIN_ID,
        data=b"%PDF-1.4 not a photo",
        file_name="shoe.pdf",
        mime_type="application/pdf",
        caption="/add DOC-1 | Doc | 10",
    )
    assert "isn't an image" in (await bot.reply_to(ADMIN_ID, after=mark)).params["text"]
    broken = await send_photo(bot, b"\xff\xd8\xff not really a jpeg", "/add BROKEN-1 | B | 10")
    assert broken.startswith("Not added: I couldn't use that image")
    assert "SKU must be" in await say(bot, "/remove " + sql.replace(" ", ""))
    assert "no product with SKU" in await say(bot, "/remove NOPE-404")

    assert bot.engine.catalog.get("DOC-1") is None and bot.engine.catalog.get("BROKEN-1") is None
    outcomes = [(row[1], row[3]) for row in audit_rows(bot)]
    assert outcomes == [("add", "failed")] * 6 + [("add", "ok")] * 2 + [
        ("product", "ok"),
        ("add", "failed"),
        ("add", "failed"),
        ("remove", "failed"),
        ("remove", "failed"),
    ]


async def test_stats_after_searches_and_feedback(
    bot: BotHarness, footwear: Path, catalog_photos: list[Path]
) -> None:
    _, listing = await search(bot, (footwear / "queries" / "search_image_01.jpg").read_bytes())
    await search(bot, catalog_photos[0].read_bytes())
    data = next(
        b["callback_data"]
        for row in listing.params["reply_markup"]["inline_keyboard"]
        for b in row
        if b.get("callback_data", "").endswith(":up")
    )
    mark = bot.api.mark()
    bot.api.press_button(user_id=CUSTOMER_ID, message=listing, data=data)
    assert (await bot.wait_for("answerCallbackQuery", after=mark)).ok
    await say(bot, f"/remove {sku_of(catalog_photos[9])}")

    text = await say(bot, "/stats")
    assert "Products: 299 active of 300" in text
    assert "Today: 2 · last 7 days: 2" in text
    assert re.search(r"Median search time \(7 days\): \d+ ms", text)
    assert "👍 1 · 👎 0" in text
    assert "Weak best match: 0% of searches" in text  # random-weight VGG16: all look alike
    # Online quality of the model and metric the searches ran with: 2 searches, one 👍.
    model = f"<i>{bot.engine.models.active.name} · {bot.engine.searcher.metric}</i>"
    assert model in text
    week = "2 searches · 👍 1 👎 0 (100% 👍) · 0 opens (0.00 per search)"
    assert f"7 days: {week}" in text and f"All time: {week}" in text
    weak = bot.settings.weak_match_distance
    report = bot.engine.history.quality_report()
    assert text == stats_text(
        bot.engine.history.stats(weak_distance=weak), report, weak_distance=weak
    )
    assert audit_rows(bot)[-1] == (ADMIN_ID, "stats", None, "ok")


async def test_an_edited_message_never_runs_a_command(
    bot: BotHarness, catalog_photos: list[Path]
) -> None:
    sku = sku_of(catalog_photos[7])
    mark = bot.api.mark()
    sent = bot.api.send_text(user_id=ADMIN_ID, text=f"/product {sku}")
    assert (await bot.wait_for("sendPhoto", after=mark)).ok
    mark = bot.api.mark()
    bot.api.edit_message(
        user_id=ADMIN_ID, message_id=sent["message"]["message_id"], text=f"/remove {sku}"
    )
    await say(bot, "/stats")  # handled after the edit: the edit has been seen by then
    product = bot.engine.catalog.get(sku)
    assert product is not None and product.active
    assert not any("removed" in text for text in bot.texts_to(ADMIN_ID, after=mark))
    assert [row[1] for row in audit_rows(bot)] == ["product", "stats"]


async def test_colour_correction_wins_over_the_photo_and_survives_a_reimport(
    bot: BotHarness, footwear: Path
) -> None:
    sku = "footwear_0002"  # a red shoe by its pixels
    assert bot.engine.catalog.require(sku).colour == "red"
    assert "is pink" in await say(bot, f"/colour {sku} Dusty Pink")
    assert bot.engine.catalog.require(sku).colour == "pink"
    assert "Usage: /colour SKU red" in await say(bot, f"/colour {sku}")
    assert "unknown colour" in await say(bot, f"/colour {sku} sparkly")
    # The shop's catalogue imported again: names, prices, categories; the correction stays.
    summary = await asyncio.to_thread(
        import_directory, bot.engine, footwear / "catalog", csv_path=footwear / "products.csv"
    )
    assert summary.skipped == []
    assert bot.engine.catalog.require(sku).colour == "pink"
    assert "is red" in await say(bot, f"/colour {sku} auto")  # back to the computed one
