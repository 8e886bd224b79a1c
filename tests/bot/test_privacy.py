"""Customers' data through the real bot and the fake Bot API: /privacy, /forget behind its
confirmation button, shared result links that passed the retention period, and a customer's
photo leaving no trace (bytes, sha256, Telegram file id) on disk, in logs or in the database."""

from __future__ import annotations

import hashlib
import io
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.handlers import privacy
from db.database import create_db_engine
from db.tables import Base, SearchLog
from lookalike.settings import Settings
from lookalike.upkeep import RETENTION_JOB
from search import SearchHistory
from tests.bot.conftest import CUSTOMER_ID, OTHER_CUSTOMER_ID, BotHarness, bot_settings_for
from tests.bot.process import start_bot, wait_for_log
from tests.bot.test_customer import callback_data, listing_search, query_image, search
from tests.fakebotapi import ApiCall, FakeBotAPI


def rows_carrying(bot: BotHarness, user_ref: str) -> int:
    """Rows of every table with a user_ref column that carry this reference."""
    total = 0
    with bot.engine.sessions() as session:
        for table in Base.metadata.sorted_tables:
            if "user_ref" in table.c:
                query = select(func.count()).select_from(table).where(table.c.user_ref == user_ref)
                total += int(session.scalar(query) or 0)
    return total


async def ask_to_forget(bot: BotHarness, user_id: int) -> ApiCall:
    """/forget: the question with its two buttons (nothing is deleted yet)."""
    mark = bot.api.mark()
    bot.api.send_text(user_id=user_id, text="/forget")
    question = await bot.reply_to(user_id, after=mark)
    assert question.params["text"] == privacy.CONFIRM
    return question


async def press(bot: BotHarness, user_id: int, message: ApiCall, data: str) -> ApiCall:
    """Press a button; the answer to the press."""
    mark = bot.api.mark()
    bot.api.press_button(user_id=user_id, message=message, data=data, check=False)
    return await bot.wait_for("answerCallbackQuery", after=mark)


async def edited_text(bot: BotHarness, *, after: int) -> str:
    edit = await bot.wait_for("editMessageText", after=after)
    assert edit.ok, edit.description
    return str(edit.params["text"])


async def test_privacy_says_what_is_kept_for_how_long(bot: BotHarness) -> None:
    mark = bot.api.mark()
    bot.api.send_text(user_id=CUSTOMER_ID, text="/privacy")
    reply = await bot.reply_to(CUSTOMER_ID, after=mark)
    text = str(reply.params["text"])
    assert reply.ok and "90 days" in text and "/forget" in text
    assert "photo itself" in text and "never on disk" in text
    assert {"privacy", "forget"} <= {c["command"] for c in bot.api.commands}
    # The daily retention job runs in every instance (the lease lets one at a time work).
    assert bot.app.job_queue is not None
    assert len(bot.app.job_queue.get_jobs_by_name(RETENTION_JOB)) == 1


async def test_forget_deletes_every_row_of_the_customer_after_confirming(
    bot: BotHarness, footwear: Path
) -> None:
    services = bot.app.bot_data.services
    me, them = services.user_ref(CUSTOMER_ID), services.user_ref(OTHER_CUSTOMER_ID)
    _, listing = await search(bot, query_image(footwear))
    answer = await press(bot, CUSTOMER_ID, listing, callback_data(listing, "fb:"))
    assert answer.ok
    await search(bot, query_image(footwear, "search_image_02.jpg"), user_id=OTHER_CUSTOMER_ID)
    mine, theirs = rows_carrying(bot, me), rows_carrying(bot, them)
    assert mine == 3 and theirs == 2  # search, vote, rate-limit event / search, event

    # "No": nothing is deleted; the question becomes the answer.
    question = await ask_to_forget(bot, CUSTOMER_ID)
    mark = bot.api.mark()
    await press(bot, CUSTOMER_ID, question, privacy.FORGET_NO)
    assert await edited_text(bot, after=mark) == privacy.CANCELLED
    assert rows_carrying(bot, me) == mine

    # Someone else pressing "yes" on my question, or "yes" forged onto a message without it,
    # deletes nothing.
    question = await ask_to_forget(bot, CUSTOMER_ID)
    refused = await press(bot, OTHER_CUSTOMER_ID, question, privacy.FORGET_YES)
    assert refused.params.get("text") == privacy.BUTTON_INVALID
    refused = await press(bot, CUSTOMER_ID, listing, privacy.FORGET_YES)
    assert refused.params.get("text") == privacy.BUTTON_INVALID
    assert (rows_carrying(bot, me), rows_carrying(bot, them)) == (mine, theirs)

    # "Yes": every row of mine goes, nobody else's, and I am told how many.
    mark = bot.api.mark()
    await press(bot, CUSTOMER_ID, question, privacy.FORGET_YES)
    done = await edited_text(bot, after=mark)
    assert done.startswith("Done: deleted 1 search, 1 rating, 0 opened products")
    assert rows_carrying(bot, me) == 0
    assert rows_carrying(bot, them) == theirs

    # Idempotent: again, there is nothing to delete.
    question = await ask_to_forget(bot, CUSTOMER_ID)
    mark = bot.api.mark()
    await press(bot, CUSTOMER_ID, question, privacy.FORGET_YES)
    assert await edited_text(bot, after=mark) == privacy.NOTHING_KEPT


async def test_shared_link_past_the_retention_period_says_it_expired(
    bot: BotHarness, footwear: Path
) -> None:
    _, listing = await search(bot, query_image(footwear))
    token = listing_search(bot, listing).share_token
    # The shared link works today...
    mark = bot.api.mark()
    bot.api.send_text(user_id=OTHER_CUSTOMER_ID, text=f"/start r_{token}")
    shared = await bot.reply_to(OTHER_CUSTOMER_ID, after=mark)
    assert "expired" not in str(shared.params["text"])
    # ...and 91 days later, once the retention job has run, it politely says it expired.
    later = datetime.now(UTC) + timedelta(days=91)
    report = SearchHistory(bot.engine.sessions, clock=lambda: later).purge_expired()
    assert report is not None and report.searches >= 1
    mark = bot.api.mark()
    bot.api.send_text(user_id=OTHER_CUSTOMER_ID, text=f"/start r_{token}")
    reply = str((await bot.reply_to(OTHER_CUSTOMER_ID, after=mark)).params["text"])
    assert reply.startswith("⌛ Sorry, these shared results are no longer available: they expired")
    assert "kept for 90 days" in reply and "Send me a photo" in reply


# ---- the photo leaves no trace ---------------------------------------------------------------


def unique_photo(footwear: Path) -> bytes:
    """A real photo no test has sent before (re-encoded with one pixel changed)."""
    image = Image.open(io.BytesIO(query_image(footwear, "search_image_02.jpg"))).convert("RGB")
    image.putpixel((0, 0), (1, 2, 3))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=91)
    return buffer.getvalue()


def files_under(folder: Path) -> Iterator[Path]:
    return (path for path in folder.rglob("*") if path.is_file())


def traces_in(data: bytes, needles: dict[str, bytes]) -> list[str]:
    return [name for name, needle in needles.items() if needle in data]


def traces_in_database(settings: Settings, needles: dict[str, bytes]) -> list[str]:
    """Every column of every row of every table, as text and as bytes."""
    found: list[str] = []
    engine = create_db_engine(settings.database_url)
    try:
        with Session(engine) as session:
            for table in Base.metadata.sorted_tables:
                for row in session.execute(select(table)):
                    for value in row:
                        data = bytes(value) if isinstance(value, bytes | memoryview) else None
                        text = (data or b"") + str(value).encode()
                        found += [f"{table.name}: {n}" for n in traces_in(text, needles)]
    finally:
        engine.dispose()
    return found


def test_customer_photo_never_touches_disk_logs_or_database(
    catalog_settings: Settings, fake_bot_api: FakeBotAPI, footwear: Path, tmp_path: Path
) -> None:
    settings = bot_settings_for(catalog_settings, fake_bot_api)
    photo = unique_photo(footwear)
    temp_dir = tmp_path / "bot-tmp"
    temp_dir.mkdir()
    log_path = tmp_path / "bot.log"
    # The bot as its own process (DEBUG logging), its temporary folder a test folder.
    process = start_bot(settings, log_path, {"TMPDIR": str(temp_dir), "LOG_LEVEL": "DEBUG"})
    try:
        wait_for_log(log_path, "ready: @", process)
        mark = fake_bot_api.mark()
        update = fake_bot_api.send_photo(user_id=CUSTOMER_ID, image=photo)
        album = fake_bot_api.wait_for_call("sendMediaGroup", after=mark, timeout=60)
        assert album.ok
        fake_bot_api.wait_for_call("sendMessage", after=album.index, timeout=30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    sizes: list[dict[str, Any]] = update["message"]["photo"]
    needles = {
        "photo bytes": photo,
        "sha256": hashlib.sha256(photo).hexdigest().encode(),
        "file id": str(sizes[-1]["file_id"]).encode(),
        "file unique id": str(sizes[-1]["file_unique_id"]).encode(),
    }
    log = log_path.read_bytes()
    assert traces_in(log, needles) == []
    for folder in (settings.media_dir, temp_dir):
        for path in files_under(folder):
            assert traces_in(path.read_bytes(), needles) == [], path
    assert traces_in_database(settings, needles) == []
    database = create_db_engine(settings.database_url)
    with Session(database) as session:
        logged = session.execute(select(SearchLog.user_ref, SearchLog.query_hash)).all()
    database.dispose()
    assert len(logged) == 1 and logged[0][1] is None  # the search was logged, without a hash
    # The scan does find what is stored: a catalogue photo's sha256 is in the database.
    catalogue_photo = sorted((footwear / "catalog").glob("*.jpg"))[0].read_bytes()
    stored = {"catalogue sha256": hashlib.sha256(catalogue_photo).hexdigest().encode()}
    assert set(traces_in_database(settings, stored)) == {"product_images: catalogue sha256"}
    if settings.database_url.startswith("sqlite"):
        database_file = Path(settings.database_url.removeprefix("sqlite:///"))
        for path in database_file.parent.glob(database_file.name + "*"):
            assert traces_in(path.read_bytes(), needles) == [], path
