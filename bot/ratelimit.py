"""A per-user limit on searches (a sliding window), so one user cannot hog the model.

The window lives in the database (rate_limit_events), so every bot instance sharing it counts
the same searches: a user cannot get around the limit by landing on another instance."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from db import RateLimits


def utc_now() -> datetime:
    return datetime.now(UTC)


class RateLimiter:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        limit: int,
        window_seconds: float = 60.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.limit = limit
        self.window = timedelta(seconds=window_seconds)
        self._slots = RateLimits(sessions)
        self._clock = clock

    def try_acquire(self, user_ref: str) -> float | None:
        """None if the user may go ahead (and counts it), else seconds until they may.
        Blocking (database): call it through `SearchEngine.run` from the event loop."""
        return self._slots.take_slot(
            user_ref, now=self._clock(), window=self.window, limit=self.limit
        )
