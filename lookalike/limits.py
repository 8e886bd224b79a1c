"""Who a client is and how often it may ask, written once for every door: the pseudonymous
reference a person is logged, voted and limited under (`user_ref`), and the sliding-window
rate limits (`RateLimiter`), counted in the database (db.RateLimits), so every instance
sharing it counts the same requests and a restart forgets nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from db import RateLimits

SEARCH = "search"  # the bucket whose rows carry the bare reference (/forget deletes them)


def utc_now() -> datetime:
    return datetime.now(UTC)


def user_ref(key: bytes, identity: str, *, source: str | None = None) -> str:
    """An opaque, stable reference of a person (a Telegram user id, a client address): an HMAC,
    so it cannot be reversed by trying every identity without the key. With `source`
    ("web"): "web:" and 40 hex digits; without (the bot's, older than the web door): 32, as
    stored by earlier versions, so /language choices and /forget still find their rows."""
    digest = hmac.new(key, identity.encode(), hashlib.sha256).hexdigest()
    return digest[:32] if source is None else f"{source}:{digest[:40]}"


class RateLimiter:
    """At most `per_minute[bucket]` events per person and bucket in any `window_seconds`
    (a sliding window). The bucket "search" counts under the bare reference; the others
    under "<bucket>:<reference>"."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        per_minute: Mapping[str, int],
        *,
        window_seconds: float = 60.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.per_minute = dict(per_minute)
        self.window = timedelta(seconds=window_seconds)
        self._slots = RateLimits(sessions)
        self._clock = clock

    def try_acquire(self, bucket: str, who: str) -> float | None:
        """None if `who` may go ahead (and it counts), else seconds until they may. Raises
        KeyError for a bucket it was not given. Blocking (database): call it through
        `SearchEngine.run` from the event loop."""
        limit = self.per_minute[bucket]
        key = who if bucket == SEARCH else f"{bucket}:{who}"
        return self._slots.take_slot(key, now=self._clock(), window=self.window, limit=limit)
