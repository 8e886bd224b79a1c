"""Rate limits every process shares through the database (rate_limit_events), so several bot or
web instances behind a load balancer count the same requests: a user cannot get around a
limit by landing on another instance.

One short transaction per call. Times are UTC and come from the caller (`now`), so tests can
move the clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, delete, func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from db.database import as_utc
from db.tables import RateLimitEvent

__all__ = ["RateLimits"]

# Keyed on the caller's reference (hashed to the lock's bigint), kept apart from other locks.
RATE_LIMIT_LOCK_PREFIX = "rate-limit:"
RATE_LIMIT_EVENTS = cast(Table, RateLimitEvent.__table__)


class RateLimits:
    """Sliding windows of events per user reference (a pseudonymous string: "web:<hmac>",
    "web-key:<id>", a Telegram user's reference...)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def take_slot(
        self, user_ref: str, *, now: datetime, window: timedelta, limit: int
    ) -> float | None:
        """Count one event of `user_ref` if fewer than `limit` were counted in the `window`
        before `now`: None. Otherwise count nothing and return the seconds until one leaves
        the window.

        Events that left the window are deleted (everyone's: the table holds one window's
        worth). The prune, the count and the insert are one transaction, and one caller's
        transactions follow each other: SQLite has one writer at a time, and on PostgreSQL
        an advisory lock on the caller's reference makes two instances' counts wait for each
        other (under READ COMMITTED both would otherwise count the same rows and both let
        the request through)."""
        cutoff = now - window
        events = RATE_LIMIT_EVENTS  # plain statements, no ORM: this runs on every request
        with self._sessions.begin() as session:
            connection = session.connection()
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(hashtextextended(:ref, 0))"),
                    {"ref": RATE_LIMIT_LOCK_PREFIX + user_ref},
                )
            connection.execute(delete(events).where(events.c.created_at < cutoff))
            count, oldest = connection.execute(
                select(func.count(events.c.id), func.min(events.c.created_at)).where(
                    events.c.user_ref == user_ref, events.c.created_at >= cutoff
                )
            ).one()
            if int(count) >= limit and oldest is not None:
                return max(0.0, (as_utc(oldest) + window - now).total_seconds())
            connection.execute(insert(events).values(user_ref=user_ref, created_at=now))
            return None
