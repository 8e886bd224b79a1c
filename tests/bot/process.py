"""`lookalike bot` as a real subprocess, for the tests that need a separate process."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lookalike.settings import Settings
from tests.conftest import REPO_ROOT, settings_env


def start_bot(
    settings: Settings, log_path: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = settings_env(settings)
    env.update(
        {
            "TELEGRAM_BOT_TOKEN": settings.telegram_bot_token.get_secret_value(),  # type: ignore[union-attr]
            "TELEGRAM_API_BASE_URL": settings.telegram_api_base_url,
            "TELEGRAM_FILE_BASE_URL": settings.telegram_file_base_url,
            "ADMIN_IDS": ",".join(str(i) for i in settings.admin_ids),
            "LOG_LEVEL": "DEBUG",
            **(extra_env or {}),
        }
    )
    log_file = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "bot"],
        env=env,
        cwd=REPO_ROOT,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )


def wait_for_log(
    log_path: Path, text: str, process: subprocess.Popen[bytes], timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log_path.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail(f"{text!r} never appeared in the bot's log:\n{log_path.read_text()[-3000:]}")


def webhook_env(port: int, secret: str, **extra: str) -> dict[str, str]:
    """The environment of a `lookalike bot` in webhook mode on 127.0.0.1:`port`."""
    return {
        "WEBHOOK_URL": "https://shop.example/telegram",
        "WEBHOOK_LISTEN": "127.0.0.1",
        "WEBHOOK_PORT": str(port),
        "WEBHOOK_SECRET_TOKEN": secret,
        **extra,
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def post_update(port: int, update: dict[str, object], secret: str | None) -> int:
    """POST an update to a bot's webhook on 127.0.0.1 as Telegram would; the HTTP status."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    response = httpx.post(f"http://127.0.0.1:{port}/telegram", json=update, headers=headers)
    return response.status_code


def wait_for_webhook(port: int, timeout: float = 30) -> None:
    """Until the bot's webhook server accepts connections (it may come up just after the
    ready line)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, f"no webhook server on port {port}"
            time.sleep(0.2)
