"""Keeping customers' data only as long as needed, and forgetting it on request.

- Retention: search-log rows older than a cutoff are folded into per-day aggregates
  (search_daily: searches, votes, opens, latency sum, best-distance histogram per UTC day, model
  and metric) and deleted with their feedback and opens, in the caller's transaction.
- Forgetting: every row that carries one customer's pseudonymous reference is deleted.
- Reading the aggregates back, so /stats adds them to the live rows' figures.

Keyword-only functions taking the caller's Session; the caller commits.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, case, delete, func, or_, select
from sqlalchemy.orm import Session

from db.database import as_utc
from db.quality import ModelQuality
from db.tables import (
    AdminDraft,
    Feedback,
    RateLimitEvent,
    ResultOpen,
    SearchDaily,
    SearchLog,
    UserLanguage,
)

__all__ = [
    "FoldedRows",
    "ForgottenRows",
    "RetentionConflictError",
    "distance_bucket",
    "fold_searches_before",
    "folded_feedback_counts",
    "folded_quality",
    "folded_weak_searches",
    "forget_user",
    "merge_quality",
]

FOLD_BATCH_ROWS = 1000  # search-log rows folded per transaction


class RetentionConflictError(RuntimeError):
    """Another transaction deleted some of the rows being folded: roll back, nothing counted."""


@dataclass(frozen=True, slots=True)
class FoldedRows:
    searches: int = 0
    feedback: int = 0
    opens: int = 0

    def __add__(self, other: FoldedRows) -> FoldedRows:
        return FoldedRows(
            self.searches + other.searches,
            self.feedback + other.feedback,
            self.opens + other.opens,
        )


@dataclass(frozen=True, slots=True)
class ForgottenRows:
    searches: int = 0
    feedback: int = 0
    opens: int = 0
    rate_limit_events: int = 0
    drafts: int = 0
    languages: int = 0  # the language chosen with /language: 0 or 1

    @property
    def total(self) -> int:
        return (
            self.searches
            + self.feedback
            + self.opens
            + self.rate_limit_events
            + self.drafts
            + self.languages
        )


def _deleted(session: Session, statement: Delete) -> int:
    """Run a DELETE; how many rows it removed."""
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(cast(CursorResult[Any], result).rowcount or 0)


def distance_bucket(distance: float) -> int:
    """The histogram bucket of a best-match distance: b holds ((b-1)/100, b/100]. Rounded
    first, so 0.65 (0.6500000000000001 after arithmetic) lands in 65, not 66."""
    return math.ceil(round(distance * 100, 6))


@dataclass
class _Day:
    searches: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    opens: int = 0
    latency_ms_sum: float = 0.0
    buckets: Counter[int] = field(default_factory=Counter)


def fold_searches_before(
    session: Session, *, cutoff: datetime, limit: int = FOLD_BATCH_ROWS
) -> FoldedRows:
    """Fold up to `limit` of the oldest search-log rows created before `cutoff` into
    search_daily and delete them with their feedback and opens. Nothing left: FoldedRows().

    Raises RetentionConflictError (the caller rolls back) if another transaction deleted some
    of these rows meanwhile (a /forget): they must not be counted twice or without their rows."""
    rows = session.execute(
        select(
            SearchLog.id,
            SearchLog.created_at,
            SearchLog.model_name,
            SearchLog.metric,
            SearchLog.latency_ms,
            SearchLog.best_distance,
        )
        .where(SearchLog.created_at < cutoff)
        .order_by(SearchLog.id)
        .limit(limit)
    ).all()
    if not rows:
        return FoldedRows()
    ids = [int(row[0]) for row in rows]
    votes = {
        int(row[0]): (int(row[1]), int(row[2]))
        for row in session.execute(
            select(
                Feedback.search_id,
                func.sum(case((Feedback.vote > 0, 1), else_=0)),
                func.sum(case((Feedback.vote < 0, 1), else_=0)),
            )
            .where(Feedback.search_id.in_(ids))
            .group_by(Feedback.search_id)
        )
    }
    opens = {
        int(row[0]): int(row[1])
        for row in session.execute(
            select(ResultOpen.search_id, func.count(ResultOpen.id))
            .where(ResultOpen.search_id.in_(ids))
            .group_by(ResultOpen.search_id)
        )
    }
    days: dict[tuple[date, str, str], _Day] = {}
    for search_id, created_at, model_name, metric, latency_ms, best in rows:
        day = days.setdefault((as_utc(created_at).date(), model_name, metric), _Day())
        up, down = votes.get(search_id, (0, 0))
        day.searches += 1
        day.thumbs_up += up
        day.thumbs_down += down
        day.opens += opens.get(search_id, 0)
        day.latency_ms_sum += float(latency_ms)
        if best is not None:
            day.buckets[distance_bucket(float(best))] += 1
    feedback = _deleted(session, delete(Feedback).where(Feedback.search_id.in_(ids)))
    opened = _deleted(session, delete(ResultOpen).where(ResultOpen.search_id.in_(ids)))
    searches = _deleted(session, delete(SearchLog).where(SearchLog.id.in_(ids)))
    if searches != len(ids):
        raise RetentionConflictError(f"{len(ids) - searches} row(s) went while folding")
    for (day_key, model_name, metric), day in days.items():
        _add_to_day(session, day_key, model_name, metric, day)
    return FoldedRows(searches=searches, feedback=feedback, opens=opened)


def _add_to_day(session: Session, day_key: date, model_name: str, metric: str, day: _Day) -> None:
    row = session.get(SearchDaily, (day_key, model_name, metric))
    if row is None:
        row = SearchDaily(
            day=day_key,
            model_name=model_name,
            metric=metric,
            searches=0,
            thumbs_up=0,
            thumbs_down=0,
            opens=0,
            latency_ms_sum=0.0,
            best_distance_buckets={},
        )
        session.add(row)
    row.searches += day.searches
    row.thumbs_up += day.thumbs_up
    row.thumbs_down += day.thumbs_down
    row.opens += day.opens
    row.latency_ms_sum += day.latency_ms_sum
    buckets = Counter({int(k): int(v) for k, v in (row.best_distance_buckets or {}).items()})
    buckets.update(day.buckets)
    # A new dict, so the JSON column is seen as changed.
    row.best_distance_buckets = {str(k): v for k, v in sorted(buckets.items())}


# ---- reading the aggregates ------------------------------------------------------------------


def folded_feedback_counts(session: Session) -> dict[int, int]:
    """{+1: thumbs up, -1: thumbs down} of the folded searches."""
    up, down = session.execute(
        select(
            func.coalesce(func.sum(SearchDaily.thumbs_up), 0),
            func.coalesce(func.sum(SearchDaily.thumbs_down), 0),
        )
    ).one()
    return {1: int(up), -1: int(down)}


def folded_quality(session: Session, *, since: date | None = None) -> list[ModelQuality]:
    """Per model and metric, the folded searches (of days from `since` on; None: all)."""
    query = select(
        SearchDaily.model_name,
        SearchDaily.metric,
        func.sum(SearchDaily.searches),
        func.sum(SearchDaily.thumbs_up),
        func.sum(SearchDaily.thumbs_down),
        func.sum(SearchDaily.opens),
    ).group_by(SearchDaily.model_name, SearchDaily.metric)
    if since is not None:
        query = query.where(SearchDaily.day >= since)
    return [
        ModelQuality(
            model_name=str(row[0]),
            metric=str(row[1]),
            searches=int(row[2] or 0),
            thumbs_up=int(row[3] or 0),
            thumbs_down=int(row[4] or 0),
            opens=int(row[5] or 0),
        )
        for row in session.execute(query)
    ]


def folded_weak_searches(
    session: Session, *, weak_distance: float, since: date | None = None
) -> tuple[int, int]:
    """(folded searches with a best match, those whose best distance is over `weak_distance`),
    exact when `weak_distance` is a multiple of 0.01."""
    query = select(SearchDaily.best_distance_buckets)
    if since is not None:
        query = query.where(SearchDaily.day >= since)
    threshold = distance_bucket(weak_distance)
    with_match = weak = 0
    for buckets in session.scalars(query):
        for bucket, count in (buckets or {}).items():
            with_match += int(count)
            if int(bucket) > threshold:
                weak += int(count)
    return with_match, weak


def merge_quality(*groups: Iterable[ModelQuality]) -> list[ModelQuality]:
    """Rows of the same model and metric added up, ordered like quality_by_model."""
    merged: dict[tuple[str, str], ModelQuality] = {}
    for group in groups:
        for row in group:
            key = (row.model_name, row.metric)
            seen = merged.get(key)
            merged[key] = (
                row
                if seen is None
                else ModelQuality(
                    model_name=row.model_name,
                    metric=row.metric,
                    searches=seen.searches + row.searches,
                    thumbs_up=seen.thumbs_up + row.thumbs_up,
                    thumbs_down=seen.thumbs_down + row.thumbs_down,
                    opens=seen.opens + row.opens,
                )
            )
    return sorted(merged.values(), key=lambda r: (-r.searches, r.model_name, r.metric))


# ---- forgetting one customer -----------------------------------------------------------------


def forget_user(
    session: Session, *, user_ref: str, admin_user_id: int | None = None
) -> ForgottenRows:
    """Delete every row carrying `user_ref`: their searches (with the votes and opens others
    gave them), their votes and opens on anyone's searches, their rate-limit events, their
    chosen language, and, for an admin (`admin_user_id`), their /add draft. Running it again
    deletes nothing."""
    theirs = select(SearchLog.id).where(SearchLog.user_ref == user_ref)
    by_them = or_(Feedback.user_ref == user_ref, Feedback.search_id.in_(theirs))
    feedback = _deleted(session, delete(Feedback).where(by_them))
    opened_by_them = or_(ResultOpen.user_ref == user_ref, ResultOpen.search_id.in_(theirs))
    opens = _deleted(session, delete(ResultOpen).where(opened_by_them))
    searches = _deleted(session, delete(SearchLog).where(SearchLog.user_ref == user_ref))
    events = _deleted(session, delete(RateLimitEvent).where(RateLimitEvent.user_ref == user_ref))
    languages = _deleted(session, delete(UserLanguage).where(UserLanguage.user_ref == user_ref))
    drafts = 0
    if admin_user_id is not None:
        drafts = _deleted(session, delete(AdminDraft).where(AdminDraft.user_id == admin_user_id))
    return ForgottenRows(
        searches=searches,
        feedback=feedback,
        opens=opens,
        rate_limit_events=events,
        drafts=drafts,
        languages=languages,
    )
