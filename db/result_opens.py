"""Products opened from a result list (result_opens): which search, which rank, by whom.

Keyword-only functions taking the caller's Session; the caller commits (the engine's
search.history). Times are UTC and come from the caller (`now`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.tables import ResultOpen, SearchLog

__all__ = ["OpenedResult", "logged_ranks", "opens_of", "record_open"]


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
