"""`lookalike bot` as a real subprocess against the fake Bot API: it gets ready, answers a
photo, stops cleanly on SIGTERM (even mid-search), and never logs its token."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lookalike.settings import Settings
from tests.bot.conftest import ADMIN_ID, CUSTOMER_ID, bot_settings_for
from tests.bot.process import start_bot, wait_for_log
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
        [sys.executable, "-m", "lookalike", "bot"],
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def post_update(port: int, update: dict[str, object], secret: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    response = httpx.post(f"http://127.0.0.1:{port}/telegram", json=update, headers=headers)
    return response.status_code


def test_webhook_mode_checks_the_secret_token(
    process_settings: Settings, fake_bot_api: FakeBotAPI, tmp_path: Path
) -> None:
    port = free_port()
    secret = "webhook-secret-0123456789"
    log_path = tmp_path / "webhook.log"
    process = start_bot(
        process_settings,
        log_path,
        {
            "WEBHOOK_URL": "https://shop.example/telegram",
            "WEBHOOK_LISTEN": "127.0.0.1",
            "WEBHOOK_PORT": str(port),
            "WEBHOOK_SECRET_TOKEN": secret,
        },
    )
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
