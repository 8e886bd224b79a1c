"""`lookalike bot` as a real subprocess against the fake Bot API: it gets ready, answers a
photo, stops cleanly on SIGTERM (even mid-search), and never logs its token."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lookalike.settings import Settings
from tests.bot.conftest import ADMIN_ID, CUSTOMER_ID, bot_settings_for
from tests.bot.process import (
    free_port,
    post_update,
    start_bot,
    wait_for_log,
    wait_for_webhook,
    webhook_env,
)
from tests.bot.test_admin import altered
from tests.conftest import settings_env
from tests.fakebotapi import FakeBotAPI


@pytest.fixture
def process_settings(catalog_settings: Settings, fake_bot_api: FakeBotAPI) -> Settings:
    return bot_settings_for(catalog_settings, fake_bot_api)


def test_bot_process_serves_a_photo_and_stops_on_sigterm(
    process_settings: Settings, fake_bot_api: FakeBotAPI, footwear: Path, tmp_path: Path
) -> None:
    log_path = tmp_path / "bot.log"
    process = start_bot(process_settings, log_path)
    try:
        wait_for_log(log_path, "ready: @", process)
        started = time.perf_counter()
        mark = fake_bot_api.mark()
        fake_bot_api.send_photo(
            user_id=CUSTOMER_ID, image=(footwear / "queries" / "search_image_02.jpg").read_bytes()
        )
        album = fake_bot_api.wait_for_call("sendMediaGroup", after=mark, timeout=60)
        elapsed = time.perf_counter() - started
        assert album.ok and len(album.params["media"]) == 8
        print(f"photo update to album sent: {elapsed * 1000:.0f} ms")
        fake_bot_api.wait_for_call("sendMessage", after=album.index, timeout=30)

        # SIGTERM while a search is in flight: the process ends cleanly with exit code 0.
        mark = fake_bot_api.mark()
        fake_bot_api.send_photo(
            user_id=ADMIN_ID, image=(footwear / "queries" / "search_image_01.jpg").read_bytes()
        )
        fake_bot_api.wait_for_call("sendChatAction", after=mark, timeout=30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log
    token = fake_bot_api.token
    assert token not in log
    assert token.split(":")[1] not in log


def test_bot_process_without_token_exits_with_a_clear_message(
    catalog_settings: Settings, tmp_path: Path
) -> None:
    env = settings_env(catalog_settings)
    env.pop("TELEGRAM_BOT_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-m", "cli", "bot"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "TELEGRAM_BOT_TOKEN is not set" in done.stderr
    assert "Traceback" not in done.stderr


def test_webhook_mode_checks_the_secret_token(
    process_settings: Settings, fake_bot_api: FakeBotAPI, tmp_path: Path
) -> None:
    port = free_port()
    secret = "webhook-secret-0123456789"
    log_path = tmp_path / "webhook.log"
    process = start_bot(process_settings, log_path, webhook_env(port, secret))
    try:
        wait_for_log(log_path, "ready: @", process)
        registered = fake_bot_api.wait_for_call("setWebhook", timeout=60)
        assert registered.params["url"] == "https://shop.example/telegram"
        assert registered.params["secret_token"] == secret
        update = fake_bot_api.send_text(user_id=CUSTOMER_ID, text="/start")
        deadline = time.monotonic() + 30
        while True:  # the webhook server may come up just after the ready line
            try:
                assert post_update(port, update, secret=None) == 403
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert post_update(port, update, secret="wrong-secret-value") == 403
        assert not fake_bot_api.calls_to("sendMessage")
        mark = fake_bot_api.mark()
        assert post_update(port, update, secret=secret) == 200
        reply = fake_bot_api.wait_for_call("sendMessage", after=mark, timeout=30)
        assert "photo" in reply.params["text"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = log_path.read_text(errors="replace")
    assert secret not in log and fake_bot_api.token not in log


def test_two_webhook_instances_over_one_database_act_as_one_bot(
    process_settings: Settings,
    fake_bot_api: FakeBotAPI,
    catalog_photos: list[Path],
    tmp_path: Path,
) -> None:
    """Two `lookalike bot` processes behind a (pretend) load balancer, sharing the database:
    a product /add-ed through the first is what a photo search through the second finds
    first, a couple of seconds later (the second's index sync job)."""
    secret = "webhook-secret-0123456789"
    ports = [free_port(), free_port()]
    logs = [tmp_path / f"instance-{i}.log" for i in (1, 2)]
    processes = [
        start_bot(process_settings, log_path, webhook_env(port, secret, INDEX_SYNC_SECONDS="1"))
        for port, log_path in zip(ports, logs, strict=True)
    ]
    api = fake_bot_api
    photo = altered(catalog_photos[60], quality=75, scale=0.9)
    try:
        for process, log_path, port in zip(processes, logs, ports, strict=True):
            wait_for_log(log_path, "ready: @", process)
            wait_for_webhook(port)

        mark = api.mark()
        update = api.send_photo(
            user_id=ADMIN_ID, image=photo, caption="/add PROC-1 | Twin Boot | 70"
        )
        assert post_update(ports[0], update, secret) == 200
        added = api.wait_for_call(
            "sendMessage",
            after=mark,
            predicate=lambda c: "Added" in str(c.params.get("text")),
            timeout=60,
        )
        assert "Added <b>PROC-1</b>" in added.params["text"]
        started = time.monotonic()

        def first_result_through_second() -> str:
            mark = api.mark()
            update = api.send_photo(user_id=CUSTOMER_ID, image=photo)
            assert post_update(ports[1], update, secret) == 200
            album = api.wait_for_call(
                "sendMediaGroup",
                after=mark,
                predicate=lambda c: c.ok and str(c.params["chat_id"]) == str(CUSTOMER_ID),
                timeout=60,
            )
            api.wait_for_call("sendMessage", after=album.index, timeout=30)  # the listing
            return str(album.params["media"][0]["caption"].split("\n")[0])

        while (first := first_result_through_second()) != "<b>1.</b> Twin Boot":
            assert time.monotonic() - started < 15, f"still {first!r} after 15 s"
            time.sleep(0.5)
        print(
            f"added through instance 1, found first through instance 2 after "
            f"{time.monotonic() - started:.1f} s"
        )

        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            assert process.wait(timeout=60) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    first_log, second_log = (path.read_text(errors="replace") for path in logs)
    for log in (first_log, second_log):
        assert "Traceback" not in log
        assert secret not in log and api.token not in log
        assert "Running job" not in log  # the sync job is quiet: no line per run at INFO
    if not process_settings.database_url.startswith("postgresql"):
        # The second instance applied the first one's change to its in-memory index (logged
        # at DEBUG only). On PostgreSQL the search itself runs in the shared database
        # (pgvector), so the product is found before any sync.
        assert re.search(r"DEBUG lookalike\.upkeep: index sync: \d+ catalogue change", second_log)
