"""The running bot under load, hostile images and Telegram faults (injected in the fake Bot
API server, never by patching the code under test)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from bot.application import build_application, running
from db.media import MediaStore, MediaStoreError, StoredFile
from db.tables import SearchLog
from lookalike.composition import engine_config
from lookalike.settings import Settings
from search import SearchEngine
from search.featurize.featurizer import Featurizer
from tests import images
from tests.bot.conftest import ADMIN_ID, CUSTOMER_ID, BotHarness
from tests.fakebotapi import ApiCall, FakeBotAPI

FAILURE_TEXT = "something went wrong"


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def to_chat(chat_id: int):  # type: ignore[no-untyped-def]
    return lambda call: str(call.params.get("chat_id")) == str(chat_id)


@pytest.mark.slow
async def test_fifty_customers_at_once_all_get_eight_results(
    bot: BotHarness, footwear: Path, catalog_photos: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    photos = [catalog_photos[i * 6].read_bytes() for i in range(48)] + [
        (footwear / "queries" / name).read_bytes()
        for name in ("search_image_01.jpg", "search_image_02.jpg")
    ]
    users = list(range(50_000, 50_050))
    inference = bot.engine
    batches_before = inference.batches_run
    mark = bot.api.mark()
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING):
        for user, photo in zip(users, photos, strict=True):
            bot.api.send_photo(user_id=user, image=photo)
        bot.api.send_text(user_id=CUSTOMER_ID, text="/start")
        welcome = await bot.reply_to(CUSTOMER_ID, after=mark, timeout=120)
        welcome_seconds = time.perf_counter() - started
        albums: dict[int, ApiCall] = {}
        for user in users:
            albums[user] = await bot.wait_for(
                "sendMediaGroup", after=mark, predicate=to_chat(user), timeout=300
            )
    total_seconds = time.perf_counter() - started
    assert all(call.ok and len(call.params["media"]) == 8 for call in albums.values())
    # Each catalogue photo found its own product first.
    for user, index in zip(users[:48], range(48), strict=True):
        first_caption = albums[user].params["media"][0]["caption"]
        assert catalog_photos[index * 6].stem.replace("_", " ").title() in first_caption
    # /start was answered long before the last album went out.
    last_album = max(call.at for call in albums.values())
    assert welcome.at < last_album
    assert not any("database is locked" in r.getMessage() for r in caplog.records)
    assert not any(FAILURE_TEXT in t.lower() for u in users for t in bot.texts_to(u, after=mark))
    batches = inference.batches_run - batches_before
    assert batches < 50  # searches that waited together were featurised together
    print(
        f"50 searches in {total_seconds:.1f} s ({50 / total_seconds:.1f}/s), "
        f"{batches} model batches, /start answered after {welcome_seconds:.2f} s"
    )


@pytest.mark.parametrize(
    ("name", "data", "mime"),
    [
        ("bomb.png", images.huge_black_png(20000, 20000), "image/png"),
        ("bomb.jpg", images.jpeg_declaring_size(12000, 12000), "image/jpeg"),
    ],
)
async def test_decompression_bombs_refused_before_decoding(
    bot: BotHarness, name: str, data: bytes, mime: str
) -> None:
    products_before = len(bot.engine.models.index)
    peak_before = peak_rss_mb()
    mark = bot.api.mark()
    bot.api.send_document(user_id=CUSTOMER_ID, data=data, file_name=name, mime_type=mime)
    reply = await bot.reply_to(CUSTOMER_ID, after=mark)
    assert "too large" in reply.params["text"].lower() or "pixels" in reply.params["text"].lower()
    # Decoding 20000 x 20000 RGB would need 1.2 GB; the peak did not move by a fraction of it.
    assert peak_rss_mb() - peak_before < 150
    assert not bot.api.calls_to("sendMediaGroup")
    assert len(bot.engine.models.index) == products_before
    # ...and the next request works.
    bot.api.send_text(user_id=CUSTOMER_ID, text="/help")
    assert "photo" in (await bot.reply_to(CUSTOMER_ID, after=reply.index)).params["text"]


ODD_IMAGES = {
    "animated-500.gif": (lambda: images.animated("GIF", 500), "image/gif"),
    "cmyk.jpg": (images.cmyk_jpeg, "image/jpeg"),
    "grey16.png": (images.sixteen_bit_gradient_png, "image/png"),
    "rgba.png": (images.transparent_png, "image/png"),
    "palette.png": (images.palette_png_with_transparency_key, "image/png"),
    "one-pixel.png": (
        lambda: images.encode(images.solid("RGB", (1, 1), (200, 30, 30)), "PNG"),
        "image/png",
    ),
    "strip.png": (lambda: images.encode(images.photo_like(1, 10000), "PNG"), "image/png"),
}


@pytest.mark.parametrize("name", sorted(ODD_IMAGES))
async def test_odd_but_valid_images_are_searched_normally(bot: BotHarness, name: str) -> None:
    build, mime = ODD_IMAGES[name]
    mark = bot.api.mark()
    bot.api.send_document(user_id=CUSTOMER_ID, data=build(), file_name=name, mime_type=mime)
    album = await bot.wait_for("sendMediaGroup", after=mark, predicate=to_chat(CUSTOMER_ID))
    assert album.ok and len(album.params["media"]) == 8
    # The search was real: its query vector is stored, 512 finite values.
    with bot.engine.sessions() as session:
        row = session.scalars(select(SearchLog).order_by(SearchLog.id.desc())).first()
        assert row is not None and row.query_vector is not None
        vector = np.frombuffer(row.query_vector, dtype="<f4")
    assert vector.shape == (512,) and np.isfinite(vector).all()


async def test_polling_survives_getupdates_errors_and_timeouts(bot: BotHarness) -> None:
    bot.api.fail_next("getUpdates", status=502, description="Bad Gateway", times=2)
    mark = bot.api.mark()
    bot.api.send_text(user_id=CUSTOMER_ID, text="/start")
    reply = await bot.reply_to(CUSTOMER_ID, after=mark, timeout=60)
    assert "photo" in reply.params["text"]
    failed = [c for c in bot.api.calls_to("getUpdates") if c.failed_status == 502]
    assert len(failed) == 2
    # A getUpdates that hangs past the client's timeout: polling starts again by itself.
    bot.api.delay_next("getUpdates", 25)
    mark = bot.api.mark()
    await bot.api.wait_delays_taken_async("getUpdates", timeout=30)  # that poll now hangs
    bot.api.send_text(user_id=CUSTOMER_ID, text="/help")
    reply = await bot.reply_to(CUSTOMER_ID, after=mark, timeout=120)
    assert "search" in reply.params["text"].lower()


class DiskThatFills(MediaStore):
    """The edge this test fakes: a disk that fills while the image file is written, and has
    room again once `full` is False."""

    full = False

    def save(self, data: bytes, *, content_hash: str, image_format: str) -> StoredFile:
        if self.full:
            raise MediaStoreError("the disk is full: the image could not be saved")
        return super().save(data, content_hash=content_hash, image_format=image_format)


async def test_disk_full_during_add_rolls_back_and_tells_the_admin(
    bot_settings: Settings,
    fake_bot_api: FakeBotAPI,
    extractor: Featurizer,
    catalog_photos: list[Path],
) -> None:
    disk = DiskThatFills(bot_settings.media_dir)
    engine = SearchEngine.open(
        engine_config(bot_settings), featurizer_provider=lambda _b: extractor, media=disk
    )
    application = build_application(bot_settings, engine=engine)
    async with running(application, poll_timeout=1):
        bot = BotHarness(app=application, api=fake_bot_api, engine=engine, settings=bot_settings)
        files_before = sorted(p for p in disk.root.rglob("*") if p.is_file())
        vectors_before = len(engine.models.index)
        disk.full = True
        photo = images.encode(Image.open(catalog_photos[3]).rotate(5), "JPEG")
        mark = bot.api.mark()
        bot.api.send_photo(user_id=ADMIN_ID, image=photo, caption="/add DISK-1 | Disk test | 10")
        reply = await bot.reply_to(ADMIN_ID, after=mark)
        assert "disk is full" in reply.params["text"].lower()
        assert "added" not in reply.params["text"].lower().replace("not added", "")
        assert engine.catalog.get("DISK-1") is None
        assert len(engine.models.index) == vectors_before
        assert sorted(p for p in disk.root.rglob("*") if p.is_file()) == files_before
        # Space is back: the same /add now works.
        disk.full = False
        mark = bot.api.mark()
        bot.api.send_photo(user_id=ADMIN_ID, image=photo, caption="/add DISK-1 | Disk test | 10")
        reply = await bot.reply_to(ADMIN_ID, after=mark)
        assert engine.catalog.get("DISK-1") is not None
    engine.close()
