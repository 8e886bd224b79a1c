"""`python -m web serve` (what `lookalike serve` runs): a real process that opens the engine
from the environment's settings, answers once ready, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from lookalike.settings import Settings
from search.featurize.featurizer import Featurizer
from tests.bot.process import free_port
from tests.conftest import REPO_ROOT, settings_env
from tests.web.conftest import copy_catalog

READY_DEADLINE_SECONDS = 180.0


def serve_env(settings: Settings, port: int, **extra: str) -> dict[str, str]:
    """The environment of a `python -m web serve` on 127.0.0.1:`port` over `settings`."""
    env = settings_env(settings)
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
            "WEB_HOST": "127.0.0.1",
            "WEB_PORT": str(port),
            "MODEL_RUNTIME": "auto",  # the runtime recorded for this CPU, no TensorFlow
            **extra,
        }
    )
    return env


def test_serve_runs_until_sigterm(
    web_catalog: Path,
    tmp_path: Path,
    models_dir: Path,
    extractor: Featurizer,
    query_photo: bytes,
) -> None:
    settings = copy_catalog(web_catalog, tmp_path / "db", models_dir)
    port = free_port()
    env = serve_env(settings, port)
    process = subprocess.Popen(
        [sys.executable, "-m", "web", "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + READY_DEADLINE_SECONDS
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            while True:
                assert process.poll() is None, process.communicate()[0]
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "serve did not become ready in time"
                time.sleep(0.2)  # polling interval; the condition is the check above
            found = client.post(
                "/api/v1/search", files={"photo": ("q.jpg", query_photo, "image/jpeg")}
            )
            assert found.status_code == 200 and len(found.json()["results"]) == 8
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0, output
        assert "Traceback" not in output
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
