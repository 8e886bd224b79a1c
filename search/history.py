"""What happened with searches: feedback, opened results, the audit trail, and the figures
/stats shows (catalogue size, searches, latency, weak matches, quality per model and metric),
read from the live search log plus the daily counts of searches past the retention period;
and, through search.retention, keeping customers' data only that long or forgetting it."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db import quality, result_opens, retention
from db import repository as repo
from db.quality import ModelQuality
from db.result_opens import OpenedResult
from search.retention import ForgottenRows, PurgeReport, SearchLogRetention

__all__ = ["QUALITY_WINDOW", "CatalogStats", "ModelQuality", "QualityReport", "SearchHistory"]

QUALITY_WINDOW = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class CatalogStats:
    products_total: int
    products_active: int
    searches_today: int
    searches_week: int
    median_latency_ms: float | None  # over the last 7 days
    thumbs_up: int
    thumbs_down: int
    weak_share: float | None  # share of 7-day searches whose best match was weak
    # The same share over every search ever made: the live log's and those folded into daily
    # counts (their best distances kept as a histogram), so it survives the retention.
    weak_share_all_time: float | None = None


@dataclass(frozen=True, slots=True)
class QualityReport:
    recent: list[ModelQuality]  # searches of the last QUALITY_WINDOW
    all_time: list[ModelQuality]


def utc_now() -> datetime:
    return datetime.now(UTC)


class SearchHistory:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        clock: Callable[[], datetime] = utc_now,
        retention_days: int = 90,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._retention = SearchLogRetention(sessions, retention_days=retention_days, clock=clock)

    @property
    def retention_days(self) -> int:
        """Days a search (and its votes and opens) is kept; its shared link expires then."""
        return self._retention.retention_days

    def purge_expired(self) -> PurgeReport | None:
        """The daily retention job (see search.retention); None: another process runs it."""
        return self._retention.purge_expired()

    def forget(self, user_ref: str, *, admin_user_id: int | None = None) -> ForgottenRows:
        """Delete every row carrying this customer's reference (see search.retention)."""
        return self._retention.forget(user_ref, admin_user_id=admin_user_id)

    def record_feedback(self, search_id: int, *, user_ref: str, vote: int) -> bool:
        """Store a thumbs up (+1) or down (-1), one per person and search (changeable).
        False when the search does not exist."""
        if vote not in (1, -1):
            raise ValueError("vote must be +1 or -1")
        with self._sessions.begin() as session:
            return repo.record_feedback(session, search_id=search_id, user_ref=user_ref, vote=vote)

    def record_shared_feedback(self, share_token: str, *, user_ref: str, vote: int) -> int | None:
        """`record_feedback` on the search whose shared link carries `share_token`: what a
        door that anyone can reach asks by (ids are sequential, a token cannot be guessed).
        The search's id, or None when no search has that token."""
        if vote not in (1, -1):
            raise ValueError("vote must be +1 or -1")
        with self._sessions.begin() as session:
            search_id = repo.search_id_of_token(session, share_token=share_token)
            if search_id is None:
                return None
            repo.record_feedback(session, search_id=search_id, user_ref=user_ref, vote=vote)
            return search_id

    def record_open(self, share_token: str, rank: int | None, user_ref: str) -> OpenedResult | None:
        """Result `rank` (or, None, the whole shared set) of the search with this token was
        opened; None if there is no such search or rank."""
        with self._sessions.begin() as session:
            return result_opens.record_open(
                session, share_token=share_token, rank=rank, user_ref=user_ref, now=self._clock()
            )

    def logged_ranks(self, search_id: int) -> dict[int, int]:
        """product id -> its rank as logged (a shared set leaves out products gone since)."""
        with self._sessions() as session:
            return result_opens.logged_ranks(session, search_id=search_id)

    def audit(
        self,
        *,
        user_id: int,
        action: str,
        outcome: str,
        target: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        with self._sessions.begin() as session:
            repo.audit(
                session,
                user_id=user_id,
                action=action,
                outcome=outcome,
                target=target,
                details=details,
            )

    def stats(self, *, weak_distance: float) -> CatalogStats:
        now = self._clock()
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        with self._sessions() as session:
            today, _, _ = repo.search_stats(session, since=day_start)
            week, latencies, best = repo.search_stats(session, since=now - timedelta(days=7))
            # All-time votes: the live log's and those of searches folded into daily counts.
            votes = repo.feedback_counts(session)
            folded = retention.folded_feedback_counts(session)
            _, _, every_best = repo.search_stats(session, since=datetime(1970, 1, 1, tzinfo=UTC))
            folded_best, folded_weak = retention.folded_weak_searches(
                session, weak_distance=weak_distance
            )
            with_match = len(every_best) + folded_best
            weak = sum(d > weak_distance for d in every_best) + folded_weak
            return CatalogStats(
                products_total=repo.count_products(session),
                products_active=repo.count_products(session, active_only=True),
                searches_today=today,
                searches_week=week,
                median_latency_ms=statistics.median(latencies) if latencies else None,
                thumbs_up=votes[1] + folded[1],
                thumbs_down=votes[-1] + folded[-1],
                weak_share=(sum(d > weak_distance for d in best) / len(best)) if best else None,
                weak_share_all_time=weak / with_match if with_match else None,
            )

    def quality_report(self) -> QualityReport:
        """Per model and metric: searches, votes and opens, last week and all time. The
        week is in the live log (it is kept at least 7 days); all time adds the daily counts
        of searches past the retention period."""
        with self._sessions() as session:
            return QualityReport(
                recent=quality.quality_by_model(session, since=self._clock() - QUALITY_WINDOW),
                all_time=retention.merge_quality(
                    quality.quality_by_model(session), retention.folded_quality(session)
                ),
            )
