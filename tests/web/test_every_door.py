"""The same photo bytes give the same ranking through every door: the Telegram bot (the real
Application against the fake Bot API), the command line (`lookalike search --json` as its own
process) and the HTTP API (uvicorn on 127.0.0.1), each over its own copy of one catalogue."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx

from bot.application import build_application, running
from lookalike.settings import Settings
from search.featurize.featurizer import Featurizer
from tests.bot.conftest import CUSTOMER_ID, BotHarness, bot_settings_for
from tests.conftest import REPO_ROOT, settings_env
from tests.fakebotapi import FakeBotAPI
from tests.web.conftest import QUERY, copy_catalog
from tests.web.server import LiveServer, open_test_engine


def api_ranking(server: LiveServer, photo: bytes) -> list[str]:
    answer = httpx.post(
        f"{server.url}/api/v1/search",
        files={"photo": (QUERY, photo, "image/jpeg")},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    return [str(item["name"]) for item in answer.json()["results"]]


def cli_ranking(settings: Settings, runtime: str, photo: Path, cwd: Path) -> list[str]:
    """`lookalike search --json` as a shop's script would run it, same model and runtime."""
    env = {**settings_env(settings), "MODEL_RUNTIME": runtime, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "search", str(photo), "--json"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [str(item["name"]) for item in json.loads(done.stdout)["results"]]


async def bot_ranking(
    settings: Settings, api: FakeBotAPI, extractor: Featurizer, photo: bytes
) -> list[str]:
    """The album's captions name the products in rank order: "<b>1.</b> Red pump 0010\n..."."""
    engine = open_test_engine(settings, extractor)
    try:
        application = build_application(settings, engine=engine)
        async with running(application, poll_timeout=1):
            bot = BotHarness(app=application, api=api, engine=engine, settings=settings)
            mark = bot.api.mark()
            bot.api.send_photo(user_id=CUSTOMER_ID, image=photo)
            album = await bot.wait_for("sendMediaGroup", after=mark, timeout=120)
    finally:
        engine.close()
    return [str(m["caption"]).split("</b> ", 1)[1].split("\n")[0] for m in album.params["media"]]


async def test_bot_cli_and_api_rank_the_same_photo_the_same(
    server: LiveServer,
    web_catalog: Path,
    tmp_path: Path,
    models_dir: Path,
    extractor: Featurizer,
    fake_bot_api: FakeBotAPI,
    footwear: Path,
) -> None:
    query = footwear / "queries" / QUERY
    photo = query.read_bytes()
    by_api = await asyncio.to_thread(api_ranking, server, photo)
    cli_settings = copy_catalog(web_catalog, tmp_path / "cli", models_dir)
    runtime = str(getattr(extractor, "runtime", "auto"))
    by_cli = await asyncio.to_thread(cli_ranking, cli_settings, runtime, query, tmp_path)
    bot_settings = bot_settings_for(
        copy_catalog(web_catalog, tmp_path / "bot", models_dir), fake_bot_api
    )
    by_bot = await bot_ranking(bot_settings, fake_bot_api, extractor, photo)
    assert len(by_api) == 8
    assert by_bot == by_cli == by_api
