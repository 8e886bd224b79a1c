"""Bot state every instance shares through the database, so several bot processes behind a
load balancer behave as one: the per-user search rate limit, admins' guided /add drafts, and
products opened from a result list.

Keyword-only functions taking the caller's Session; the caller commits. Times are UTC and
come from the caller (`now`), so tests can move the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session

from db.tables import AdminDraft, RateLimitEvent, ResultOpen, SearchLog


def as_utc(value: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite gives naive ones back)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _changed(result: object) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


# ---- the per-user search rate limit -----------------------------------------------------------


def take_rate_slot(
    session: Session, *, user_ref: str, now: datetime, window: timedelta, limit: int
) -> float | None:
    """Count one search of `user_ref` if fewer than `limit` were counted in the `window` before
    `now`: None. Otherwise count nothing and return the seconds until one leaves the window.

    Events that left the window are deleted (everyone's: the table holds one window's worth).
    Two instances may both let a search through in the same instant; the limit is shared,
    not a lock."""
    cutoff = now - window
    session.execute(delete(RateLimitEvent).where(RateLimitEvent.created_at < cutoff))
    count, oldest = session.execute(
        select(func.count(RateLimitEvent.id), func.min(RateLimitEvent.created_at)).where(
            RateLimitEvent.user_ref == user_ref, RateLimitEvent.created_at >= cutoff
        )
    ).one()
    if int(count) >= limit and oldest is not None:
        return max(0.0, (as_utc(oldest) + window - now).total_seconds())
    session.add(RateLimitEvent(user_ref=user_ref, created_at=now))
    return None


# ---- admins' guided /add drafts ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DraftRecord:
    user_id: int
    step: str
    data: dict[str, Any]
    updated_at: datetime  # as stored: what `advance_draft` and `delete_draft` compare with

    def age(self, now: datetime) -> timedelta:
        return now - as_utc(self.updated_at)


def _draft_record(row: AdminDraft) -> DraftRecord:
    return DraftRecord(
        user_id=int(row.user_id),
        step=row.step,
        data=dict(row.data or {}),
        updated_at=row.updated_at,
    )


def get_draft(session: Session, *, user_id: int) -> DraftRecord | None:
    row = session.get(AdminDraft, user_id)
    return _draft_record(row) if row is not None else None


def save_draft(
    session: Session, *, user_id: int, step: str, data: dict[str, Any], now: datetime
) -> None:
    """Start a draft, replacing any the admin had."""
    row = session.get(AdminDraft, user_id)
    if row is None:
        session.add(AdminDraft(user_id=user_id, step=step, data=data, updated_at=now))
    else:
        row.step, row.data, row.updated_at = step, data, now


def advance_draft(
    session: Session, *, draft: DraftRecord, step: str, data: dict[str, Any], now: datetime
) -> bool:
    """Move `draft` to its next step, unless it changed since it was read (another message,
    perhaps on another instance, got there first): then False and nothing changes."""
    result = session.execute(
        update(AdminDraft)
        .where(AdminDraft.user_id == draft.user_id, AdminDraft.updated_at == draft.updated_at)
        .values(step=step, data=data, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return _changed(result) == 1


def delete_draft(session: Session, *, user_id: int, updated_at: datetime | None = None) -> bool:
    """Delete the admin's draft; with `updated_at`, only if it is still that version (so one
    message, on one instance, takes it). True if a row was deleted."""
    statement = delete(AdminDraft).where(AdminDraft.user_id == user_id)
    if updated_at is not None:
        statement = statement.where(AdminDraft.updated_at == updated_at)
    result = session.execute(statement.execution_options(synchronize_session=False))
    return _changed(result) == 1


def drafts_older_than(session: Session, *, before: datetime) -> list[DraftRecord]:
    rows = session.scalars(
        select(AdminDraft).where(AdminDraft.updated_at < before).order_by(AdminDraft.user_id)
    )
    return [_draft_record(row) for row in rows]


# ---- products opened from a result list -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenedResult:
    search_id: int
    product_id: int | None  # None: the whole (shared) result set was opened
    rank: int | None  # 1-based position in the logged results


def record_open(
    session: Session, *, share_token: str, rank: int | None, user_ref: str, now: datetime
) -> OpenedResult | None:
    """Record that `user_ref` opened result `rank` of the search with this share token (rank
    None: the shared result set). None, and nothing recorded, if there is no such search or
    no such rank."""
    row = session.execute(
        select(SearchLog.id, SearchLog.results).where(SearchLog.share_token == share_token)
    ).one_or_none()
    if row is None:
        return None
    search_id, results = int(row[0]), list(row[1] or [])
    product_id: int | None = None
    if rank is not None:
        if not 1 <= rank <= len(results):
            return None
        product_id = int(str(results[rank - 1]["product_id"]))
    session.add(
        ResultOpen(
            search_id=search_id,
            product_id=product_id,
            rank=rank,
            user_ref=user_ref,
            created_at=now,
        )
    )
    return OpenedResult(search_id=search_id, product_id=product_id, rank=rank)


def logged_ranks(session: Session, *, search_id: int) -> dict[int, int]:
    """{product id: its 1-based rank in the search as logged} (a shared result set may show
    fewer products today, so its positions differ from the logged ranks)."""
    results = session.scalar(select(SearchLog.results).where(SearchLog.id == search_id))
    return {int(str(entry["product_id"])): rank for rank, entry in enumerate(results or [], 1)}


def opens_of(session: Session, *, search_id: int) -> list[OpenedResult]:
    rows = session.execute(
        select(ResultOpen.search_id, ResultOpen.product_id, ResultOpen.rank)
        .where(ResultOpen.search_id == search_id)
        .order_by(ResultOpen.id)
    ).all()
    return [OpenedResult(search_id=int(r[0]), product_id=r[1], rank=r[2]) for r in rows]
