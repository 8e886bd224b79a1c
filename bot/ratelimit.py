"""A per-user limit on searches (a sliding window), so one user cannot hog the model.

The window lives in the database (rate_limit_events), so every bot instance sharing it counts
the same searches: a user cannot get around the limit by landing on another instance."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from db import shared_state


def utc_now() -> datetime:
    return datetime.now(UTC)


class RateLimiter:
    def __init__(
        self,
        session_factory: Callable[[], Session],
        *,
        limit: int,
        window_seconds: float = 60.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.limit = limit
        self.window = timedelta(seconds=window_seconds)
        self._session_factory = session_factory
        self._clock = clock

    def try_acquire(self, user_ref: str) -> float | None:
        """None if the user may go ahead (and counts it), else seconds until they may.
        Blocking (database): call it through `SearchEngine.run` from the event loop."""
        with self._session_factory() as session:
            wait = shared_state.take_rate_slot(
                session,
                user_ref=user_ref,
                now=self._clock(),
                window=self.window,
                limit=self.limit,
            )
            session.commit()
            return wait
