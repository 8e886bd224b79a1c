"""A per-user limit on searches (a sliding window), so one user cannot hog the model."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self,
        *,
        limit: int,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._events: defaultdict[int, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def try_acquire(self, user_id: int) -> float | None:
        """None if the user may go ahead (and counts it), else seconds until they may."""
        now = self._clock()
        with self._lock:
            events = self._events[user_id]
            while events and now - events[0] >= self.window_seconds:
                events.popleft()
            if len(events) >= self.limit:
                return self.window_seconds - (now - events[0])
            events.append(now)
            return None
