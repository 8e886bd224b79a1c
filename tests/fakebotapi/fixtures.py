"""Pytest fixtures for the fake Bot API; import them into a conftest with
``from tests.fakebotapi.fixtures import fake_bot_api``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import FakeBotAPI

__all__ = ["fake_bot_api"]


@pytest.fixture
def fake_bot_api() -> Iterator[FakeBotAPI]:
    """A started ``FakeBotAPI`` for one test, stopped afterwards.

    Fails the test at teardown if the fake itself raised (its tracebacks are in
    ``server_errors``), so a bug in the fake never passes for a bug in the bot.
    """
    api = FakeBotAPI()
    api.start()
    try:
        yield api
    finally:
        api.stop()
    if api.server_errors:
        pytest.fail("the fake Bot API raised:\n" + "\n".join(api.server_errors), pytrace=False)
