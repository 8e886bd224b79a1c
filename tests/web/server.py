"""A real uvicorn server in a thread on 127.0.0.1 (a free port), over a real engine, for the
web tests: started, waited for by polling /healthz (with a deadline that fails), stopped."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from lookalike.settings import Settings
from search import SearchEngine
from search.featurize.featurizer import Featurizer
from web.application import create_app
from web.config import WebConfig
from web.serve import SERVER_STACK

READY_DEADLINE_SECONDS = 60.0


class LiveServer:
    def __init__(self, engine: SearchEngine, config: WebConfig) -> None:
        self.engine = engine
        self.app = create_app(engine, config)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app, log_level="warning", lifespan="on", log_config=None, **SERVER_STACK
            )
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self, *, wait_ready: bool = True) -> None:
        """Until /healthz answers (the server listens); with `wait_ready`, until /readyz says
        the model is loaded too (the warm-up runs after the server listens)."""
        self._thread.start()
        self._poll("/healthz")
        if wait_ready:
            self.wait_ready()

    def wait_ready(self) -> None:
        self._poll("/readyz")

    def _poll(self, path: str) -> None:
        deadline = time.monotonic() + READY_DEADLINE_SECONDS
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while True:
                if not self._thread.is_alive():
                    raise AssertionError("the web server stopped while starting")
                try:
                    answer = client.get(path)
                    if answer.status_code == 200 and self._server.started:
                        return
                    assert "failed" not in answer.text, answer.text
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"the web server did not answer {path} in time")
                time.sleep(0.05)  # polling interval, not synchronisation: the check is above

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()
        assert not self._thread.is_alive(), "the web server did not stop"

    def client(self, **options: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **options)  # type: ignore[arg-type]


def open_test_engine(settings: Settings, extractor: Featurizer) -> SearchEngine:
    from lookalike.composition import open_engine

    return open_engine(settings, featurizer=lambda _backbone: extractor)


@contextmanager
def live_server(
    settings: Settings, extractor: Featurizer, config: WebConfig
) -> Iterator[LiveServer]:
    engine = open_test_engine(settings, extractor)
    server = LiveServer(engine, config)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        engine.close()
