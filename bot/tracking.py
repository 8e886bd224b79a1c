"""What customers do with their results, for the online quality figures in /stats: which
products they open from a result list (and which shared result sets), next to the thumbs up
and down already in the feedback table.

Blocking (database): handlers call these methods with asyncio.to_thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from db import quality, shared_state
from db.quality import ModelQuality
from db.shared_state import OpenedResult

QUALITY_WINDOW = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class QualityReport:
    recent: list[ModelQuality]  # searches of the last QUALITY_WINDOW
    all_time: list[ModelQuality]


class ResultTracking:
    def __init__(
        self,
        session_factory: Callable[[], Session],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._session_factory = session_factory
        self._clock = clock

    def record_open(self, share_token: str, rank: int | None, user_ref: str) -> OpenedResult | None:
        """Result `rank` (or, None, the whole shared set) of the search with this token was
        opened; None if there is no such search or rank."""
        with self._session_factory() as session:
            opened = shared_state.record_open(
                session, share_token=share_token, rank=rank, user_ref=user_ref, now=self._clock()
            )
            session.commit()
            return opened

    def logged_ranks(self, search_id: int) -> dict[int, int]:
        with self._session_factory() as session:
            return shared_state.logged_ranks(session, search_id=search_id)

    def report(self) -> QualityReport:
        with self._session_factory() as session:
            return QualityReport(
                recent=quality.quality_by_model(session, since=self._clock() - QUALITY_WINDOW),
                all_time=quality.quality_by_model(session),
            )
