"""Settings.as_env: a child process given the environment runs with the very same settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from lookalike.settings import Settings


def _read_in(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a child process with exactly `env` reads (no .env file)."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_a_child_reads_the_same_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every kind of field away from its default: secret, list of ids, list of text, bool,
    # path, float, literal, optional text.
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{tmp_path / 'x.db'}",
        media_dir=tmp_path / "media",
        model_runtime="openvino-int8",
        weak_match_distance=0.4321,
        infer_category=False,
        telegram_bot_token=SecretStr("123:secret"),
        admin_ids=frozenset({7, 42}),
        web_cors_origins=("https://b.example", "https://a.example"),
        webhook_url="https://shop.example/hook",
        feed_category_map=tmp_path / "map.toml",
    )
    env = settings.as_env()
    assert env["TELEGRAM_BOT_TOKEN"] == "123:secret"  # the child needs the real token
    assert env["ADMIN_IDS"] == "7,42" and env["INFER_CATEGORY"] == "false"
    assert _read_in(env, monkeypatch) == settings


def test_an_unset_setting_stays_unset_in_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.telegram_bot_token is None and settings.feed_url is None
    # The parent's own environment has values the settings do not: they must not leak through.
    parent = {"TELEGRAM_BOT_TOKEN": "999:parent", "FEED_URL": "https://parent.example/feed"}
    child = _read_in({**parent, **settings.as_env()}, monkeypatch)
    assert child.telegram_bot_token is None and child.feed_url is None
    assert child == settings
