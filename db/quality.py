"""Online search quality per model and metric: how customers react to the results.

Searches are grouped by the model and the distance they ran with (search_log.model_name,
search_log.metric); each group counts its searches, the thumbs up and down given to them, and
the products opened from them (result_opens). A time window selects searches by when they ran,
so feedback and opens belong to the searches they were given on.

Keyword-only functions taking the caller's Session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from db.tables import Feedback, ResultOpen, SearchLog


@dataclass(frozen=True, slots=True)
class ModelQuality:
    model_name: str
    metric: str
    searches: int
    thumbs_up: int
    thumbs_down: int
    opens: int  # products (or shared result sets) opened from these searches

    @property
    def votes(self) -> int:
        return self.thumbs_up + self.thumbs_down

    @property
    def thumbs_up_rate(self) -> float | None:
        """Share of votes that were thumbs up; None without votes."""
        return self.thumbs_up / self.votes if self.votes else None

    @property
    def opens_per_search(self) -> float | None:
        return self.opens / self.searches if self.searches else None


def quality_by_model(session: Session, *, since: datetime | None = None) -> list[ModelQuality]:
    """One row per (model, metric) with searches since `since` (all time: None), most
    searches first."""
    # Per-search totals first, so a search with several votes and opens is counted once.
    votes = (
        select(
            Feedback.search_id.label("search_id"),
            func.sum(case((Feedback.vote > 0, 1), else_=0)).label("up"),
            func.sum(case((Feedback.vote < 0, 1), else_=0)).label("down"),
        )
        .group_by(Feedback.search_id)
        .subquery()
    )
    opens = (
        select(ResultOpen.search_id.label("search_id"), func.count(ResultOpen.id).label("opens"))
        .group_by(ResultOpen.search_id)
        .subquery()
    )
    searches = func.count(SearchLog.id)
    query = (
        select(
            SearchLog.model_name,
            SearchLog.metric,
            searches,
            func.coalesce(func.sum(votes.c.up), 0),
            func.coalesce(func.sum(votes.c.down), 0),
            func.coalesce(func.sum(opens.c.opens), 0),
        )
        .outerjoin(votes, votes.c.search_id == SearchLog.id)
        .outerjoin(opens, opens.c.search_id == SearchLog.id)
        .group_by(SearchLog.model_name, SearchLog.metric)
        .order_by(searches.desc(), SearchLog.model_name, SearchLog.metric)
    )
    if since is not None:
        query = query.where(SearchLog.created_at >= since)
    return [
        ModelQuality(
            model_name=str(row[0]),
            metric=str(row[1]),
            searches=int(row[2]),
            thumbs_up=int(row[3]),
            thumbs_down=int(row[4]),
            opens=int(row[5]),
        )
        for row in session.execute(query)
    ]
