"""`python -m web serve` with WEBHOOK_URL set: the bot takes its webhook in the web server's
process (one model, one engine), checked against the fake Bot API; without a token it refuses
to start with a clear message."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx

from bot.application import build_application
from bot.jobs import DRAFT_JOB
from lookalike.upkeep import FEED_JOB, INDEX_SYNC_JOB, RETENTION_JOB
from search import SearchEngine
from search.featurize.featurizer import Featurizer
from tests.conftest import make_settings
from tests.fakebotapi.server import FakeBotAPI
from tests.web.conftest import copy_catalog
from tests.web.test_serve import READY_DEADLINE_SECONDS, free_port, serve_env

CUSTOMER_ID = 4242
SECRET = "webhook-secret-0123456789"


def test_the_bot_webhook_shares_the_web_server(
    web_catalog: Path,
    tmp_path: Path,
    models_dir: Path,
    extractor: Featurizer,
    fake_bot_api: FakeBotAPI,
    query_photo: bytes,
) -> None:
    settings = copy_catalog(web_catalog, tmp_path / "db", models_dir)
    port = free_port()
    env = serve_env(
        settings,
        port,
        LOG_LEVEL="DEBUG",  # the most a log could say: still no secret in it
        TELEGRAM_BOT_TOKEN=fake_bot_api.token,
        TELEGRAM_API_BASE_URL=fake_bot_api.base_url,
        TELEGRAM_FILE_BASE_URL=fake_bot_api.base_file_url,
        WEBHOOK_URL="https://shop.example/telegram",
        WEBHOOK_SECRET_TOKEN=SECRET,
        INDEX_SYNC_SECONDS=str(SYNC_SECONDS),
        FEED_URL="http://127.0.0.1:9/feed.tsv",  # first scheduled run after the test is over
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "web", "serve"],
            env=env,
            cwd=tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_DEADLINE_SECONDS
        with httpx.Client(base_url=base, timeout=30) as client:
            while True:
                assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "serve did not become ready in time"
                time.sleep(0.2)  # polling interval; the condition is the check above
            registered = fake_bot_api.wait_for_call("setWebhook", timeout=60)
            assert registered.params["url"] == "https://shop.example/telegram"
            assert registered.params["secret_token"] == SECRET

            update = fake_bot_api.send_text(user_id=CUSTOMER_ID, text="/start")
            assert client.post("/telegram", json=update).status_code == 403
            wrong = {"X-Telegram-Bot-Api-Secret-Token": "wrong-secret-value"}
            assert client.post("/telegram", json=update, headers=wrong).status_code == 403
            assert not fake_bot_api.calls_to("sendMessage")
            right = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
            garbage = client.post("/telegram", content=b"{oops", headers=right)
            assert garbage.status_code == 400
            mark = fake_bot_api.mark()
            assert client.post("/telegram", json=update, headers=right).status_code == 200
            reply = fake_bot_api.wait_for_call("sendMessage", after=mark, timeout=60)
            assert "photo" in reply.params["text"]

            # The website keeps working beside the bot, on the same engine.
            found = client.post(
                "/api/v1/search", files={"photo": ("q.jpg", query_photo, "image/jpeg")}
            )
            assert found.status_code == 200 and len(found.json()["results"]) == 8
        # The count below needs 4 index syncs at least to tell one scheduler from two: on a
        # quiet machine the steps above can take less than 4 intervals.
        deadline = time.monotonic() + 30
        while log_path.read_text(errors="replace").count("lookalike.upkeep: index sync:") < 4:
            assert time.monotonic() < deadline, "the index sync did not run 4 times in 30 s"
            time.sleep(0.1)  # polling interval; the condition is the log
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = log_path.read_text(errors="replace")
    assert SECRET not in log and fake_bot_api.token not in log
    assert_each_job_runs_once(log)
    assert "Traceback" not in log


SYNC_SECONDS = 0.25


def assert_each_job_runs_once(log: str) -> None:
    """In the one process that serves the website and the bot, every upkeep job is scheduled
    once (lookalike.upkeep logs each job it makes for a scheduler) and the index sync runs at
    its interval, not twice as often: sleeps between runs only make runs rarer, so more than
    the span allows means a second scheduler."""
    for name in (INDEX_SYNC_JOB, RETENTION_JOB, FEED_JOB):
        assert log.count(f"upkeep: {name} every") == 1, name
    stamps = [
        datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
        for line in log.splitlines()
        if "lookalike.upkeep: index sync:" in line
    ]
    assert len(stamps) >= 4, "the index sync should have run during the test"
    span = (stamps[-1] - stamps[0]).total_seconds()
    assert len(stamps) <= span / SYNC_SECONDS + 2, (len(stamps), span)


def test_webhook_without_a_token_is_refused_clearly(
    web_catalog: Path, tmp_path: Path, models_dir: Path
) -> None:
    settings = copy_catalog(web_catalog, tmp_path / "db", models_dir)
    env = serve_env(
        settings, free_port(), LOG_LEVEL="DEBUG", WEBHOOK_URL="https://shop.example/telegram"
    )
    env.pop("TELEGRAM_BOT_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-m", "web", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2
    assert "TELEGRAM_BOT_TOKEN is not set" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bot_the_server_hosts_leaves_the_upkeep_to_it(
    engine: SearchEngine, tmp_path: Path, models_dir: Path
) -> None:
    """Under `serve` with the webhook the server runs the index sync, the retention and the
    feed schedule (create_app, web/serve.py): the hosted bot schedules only its own job, so
    each runs once in the process. On its own, the bot schedules them all."""
    settings = make_settings(
        tmp_path,
        models_dir,
        telegram_bot_token="123456:not-a-real-token",
        feed_url="https://shop.example/feed.tsv",
    )

    def scheduled(*, hosted: bool) -> list[str]:
        application = build_application(settings, engine=engine, hosted=hosted)
        assert application.job_queue is not None
        return sorted(job.name for job in application.job_queue.scheduler.get_jobs())

    assert scheduled(hosted=True) == [DRAFT_JOB]
    assert scheduled(hosted=False) == sorted([DRAFT_JOB, FEED_JOB, RETENTION_JOB, INDEX_SYNC_JOB])
