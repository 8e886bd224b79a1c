"""Customers' data (issue 16) on a real migrated database, without the model: the retention
job folds exactly the searches past SEARCH_LOG_RETENTION_DAYS into daily counts (with a
controlled clock) and /stats says the same before and after; /forget removes every row of one
customer and nobody else's. Both backends (`--backend=postgres`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.handlers.admin import stats_text
from db import Drafts, Leases, RateLimits
from db import repository as repo
from db.database import create_db_engine, create_session_factory
from db.migrate import ensure_up_to_date
from db.retention import distance_bucket, folded_weak_searches
from db.tables import AdminDraft, Base, Feedback, RateLimitEvent, ResultOpen, SearchDaily, SearchLog
from lookalike.settings import Settings
from search import SearchHistory
from search.retention import RETENTION_LEASE

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
WEAK = 0.65
DAYS = 90


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(settings.database_url)
    ensure_up_to_date(engine)
    try:
        yield create_session_factory(engine)
    finally:
        engine.dispose()


def history_at(sessions: sessionmaker[Session], now: datetime = NOW) -> SearchHistory:
    return SearchHistory(sessions, clock=lambda: now, retention_days=DAYS)


def log_search(
    sessions: sessionmaker[Session],
    *,
    user_ref: str = "u",
    at: datetime = NOW,
    similarity: float = 50.0,
    metric: str = "cosine",
    latency_ms: float = 10.0,
) -> tuple[int, str]:
    """A logged search with 8 results; best distance 1 - similarity/100. Its id and token."""
    with sessions() as session:
        entry = repo.log_search(
            session,
            user_ref=user_ref,
            source="telegram",
            query_hash=None,
            model_name="vgg16_avgpool",
            filters={},
            results=[
                {"product_id": i, "image_id": i, "distance": 0.1, "similarity": similarity - i}
                for i in range(8)
            ],
            latency_ms=latency_ms,
            metric=metric,
        )
        session.flush()
        # The clock of the test: searches made days ago.
        session.execute(update(SearchLog).where(SearchLog.id == entry.id).values(created_at=at))
        session.commit()
        assert entry.share_token is not None
        return entry.id, entry.share_token


def snapshot(history: SearchHistory) -> str:
    """What /stats shows."""
    return stats_text(
        history.stats(weak_distance=WEAK), history.quality_report(), weak_distance=WEAK
    )


def ids_of(sessions: sessionmaker[Session], column: Any) -> set[int]:
    with sessions() as session:
        return {int(value) for value in session.scalars(select(column))}


# ---- the retention job ----------------------------------------------------------------------


def test_retention_folds_exactly_the_old_searches_and_stats_stay_the_same(
    sessions: sessionmaker[Session],
) -> None:
    history = history_at(sessions)
    ages = {
        "today": timedelta(hours=1),
        "3 days": timedelta(days=3),
        "30 days": timedelta(days=30),
        "just kept": timedelta(days=DAYS) - timedelta(minutes=1),
        "just gone": timedelta(days=DAYS) + timedelta(minutes=1),
        "120 days a": timedelta(days=120, hours=1),
        "120 days b": timedelta(days=120, hours=2),
        "400 days": timedelta(days=400),
    }
    # Similarities: best distances 0.5, 0.65 (exactly the threshold: not weak), 0.7 (weak)...
    similarity = {"just gone": 35.0, "120 days a": 30.0, "120 days b": 50.0, "400 days": 20.0}
    searches = {
        name: log_search(
            sessions,
            user_ref=f"user-{i % 3}",
            at=NOW - age,
            similarity=similarity.get(name, 45.0),
            metric="euclidean" if name == "120 days b" else "cosine",
            latency_ms=10.0 + i,
        )
        for i, (name, age) in enumerate(ages.items())
    }
    for name, (search_id, token) in searches.items():
        # Votes from two people, opens from one (a result and the shared set), on each search.
        assert history.record_feedback(search_id, user_ref="a", vote=1)
        if name in ("30 days", "120 days a", "400 days"):
            assert history.record_feedback(search_id, user_ref="b", vote=-1)
        assert history.record_open(token, 2, "c") is not None
        if name in ("just gone", "120 days b"):
            assert history.record_open(token, None, "d") is not None
    gone = {"just gone", "120 days a", "120 days b", "400 days"}
    kept_ids = {searches[name][0] for name in ages if name not in gone}
    before = snapshot(history)
    assert "All time: 7 searches" in before  # the cosine searches, all of them
    assert "All time: 1 search " in before  # the euclidean one
    # 0.7 and 0.8 of 8 searches are weak: after folding, the live log has none of them and
    # the daily counts' histogram both, so the all-time share stays (the snapshots below).
    assert "Weak best match: 0% of searches (best distance over 0.65); all time 25%" in before

    report = history.purge_expired()

    assert report is not None and report.cutoff == NOW - timedelta(days=DAYS)
    assert (report.searches, report.feedback, report.opens) == (4, 6, 6)
    assert ids_of(sessions, SearchLog.id) == kept_ids
    assert ids_of(sessions, Feedback.search_id) == kept_ids
    assert ids_of(sessions, ResultOpen.search_id) == kept_ids
    assert snapshot(history) == before
    with sessions() as session:
        daily = {
            (row.day, row.metric): (row.searches, row.thumbs_up, row.thumbs_down, row.opens)
            for row in session.scalars(select(SearchDaily))
        }
        # 0.65 is not over the threshold; 0.7 and 0.8 are.
        assert folded_weak_searches(session, weak_distance=WEAK) == (4, 2)
        latency = session.scalar(select(func.sum(SearchDaily.latency_ms_sum)))
    day = (NOW - timedelta(days=120)).date()
    assert daily == {
        ((NOW - ages["just gone"]).date(), "cosine"): (1, 1, 0, 2),
        (day, "cosine"): (1, 1, 1, 1),
        (day, "euclidean"): (1, 1, 0, 2),
        ((NOW - ages["400 days"]).date(), "cosine"): (1, 1, 1, 1),
    }
    assert latency == pytest.approx((10 + 4) + (10 + 5) + (10 + 6) + (10 + 7))

    # Again: nothing left to fold, the same figures.
    again = history.purge_expired()
    assert again is not None and again.searches == 0
    assert snapshot(history) == before
    # A day later, "just kept" goes too, and /stats still says the same.
    later = history_at(sessions, NOW + timedelta(days=1))
    figures_later = snapshot(later)
    assert later.purge_expired().searches == 1  # type: ignore[union-attr]
    assert snapshot(later) == figures_later


def test_retention_waits_while_another_process_holds_the_lease(
    sessions: sessionmaker[Session],
) -> None:
    old, _ = log_search(sessions, at=NOW - timedelta(days=DAYS + 5))
    assert Leases(sessions).take(
        RETENTION_LEASE, "another-instance", now=NOW, ttl=timedelta(hours=1)
    )
    assert history_at(sessions).purge_expired() is None
    assert ids_of(sessions, SearchLog.id) == {old}
    # Once its lease has run out (a crashed holder), this process takes over.
    report = history_at(sessions, NOW + timedelta(hours=2)).purge_expired()
    assert report is not None and report.searches == 1
    assert ids_of(sessions, SearchLog.id) == set()
    # ...and released it when done.
    assert Leases(sessions).holder(RETENTION_LEASE, now=NOW + timedelta(hours=2)) is None


def test_weak_histogram_is_exact_at_the_threshold(sessions: sessionmaker[Session]) -> None:
    assert [distance_bucket(d) for d in (0.64, 1 - 35.0 / 100, 0.6501, 0.66)] == [64, 65, 66, 66]
    with sessions() as session:
        session.add(
            SearchDaily(
                day=date(2026, 1, 1),
                model_name="m",
                metric="cosine",
                searches=6,
                thumbs_up=0,
                thumbs_down=0,
                opens=0,
                latency_ms_sum=0.0,
                best_distance_buckets={"64": 1, "65": 2, "66": 3},
            )
        )
        session.commit()
        assert folded_weak_searches(session, weak_distance=0.65) == (6, 3)
        assert folded_weak_searches(session, weak_distance=0.64) == (6, 5)


def test_retention_shorter_than_the_stats_week_is_refused(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    with pytest.raises(ValueError, match="at least 7 days"):
        SearchHistory(sessions, retention_days=3)
    with pytest.raises(ValidationError, match="search_log_retention_days"):
        Settings(_env_file=None, search_log_retention_days=3)  # type: ignore[call-arg]


# ---- /forget ---------------------------------------------------------------------------------


def rows_carrying(sessions: sessionmaker[Session], user_ref: str) -> dict[str, int]:
    """Rows of every table with a user_ref column that carry this reference."""
    found: dict[str, int] = {}
    with sessions() as session:
        for table in Base.metadata.sorted_tables:
            if "user_ref" in table.c:
                found[table.name] = int(
                    session.scalar(
                        select(func.count()).select_from(table).where(table.c.user_ref == user_ref)
                    )
                    or 0
                )
    return found


def test_forget_removes_every_row_of_that_customer_and_nobody_elses(
    sessions: sessionmaker[Session],
) -> None:
    history = history_at(sessions)
    mine = [log_search(sessions, user_ref="me") for _ in range(3)]
    theirs = [log_search(sessions, user_ref="them") for _ in range(2)]
    # Votes and opens both ways: mine on their searches, theirs on mine.
    history.record_feedback(theirs[0][0], user_ref="me", vote=1)
    history.record_feedback(mine[0][0], user_ref="them", vote=-1)
    history.record_feedback(mine[1][0], user_ref="me", vote=1)
    history.record_feedback(theirs[1][0], user_ref="them", vote=1)
    history.record_open(theirs[0][1], 1, "me")
    history.record_open(mine[2][1], None, "them")
    history.record_open(theirs[1][1], 3, "them")
    for ref in ("me", "me", "them"):
        RateLimits(sessions).take_slot(ref, now=NOW, window=timedelta(minutes=1), limit=10)
    for admin_id in (1001, 1002):
        Drafts(sessions).save(admin_id, step="name", data={}, now=NOW)
    assert set(rows_carrying(sessions, "me").values()) != {0}
    their_rows = rows_carrying(sessions, "them")

    forgotten = history.forget("me", admin_user_id=1001)

    assert (forgotten.searches, forgotten.feedback, forgotten.opens) == (3, 3, 2)
    assert (forgotten.rate_limit_events, forgotten.drafts, forgotten.total) == (2, 1, 11)
    assert set(rows_carrying(sessions, "me").values()) == {0}
    # Their rows stay, but for their vote and open on my searches (gone with them).
    after = rows_carrying(sessions, "them")
    assert after == {
        **their_rows,
        "feedback": their_rows["feedback"] - 1,
        "result_opens": their_rows["result_opens"] - 1,
    }
    assert ids_of(sessions, SearchLog.id) == {search_id for search_id, _ in theirs}
    assert ids_of(sessions, Feedback.search_id) == {theirs[1][0]}
    assert ids_of(sessions, ResultOpen.search_id) == {theirs[1][0]}
    assert ids_of(sessions, AdminDraft.user_id) == {1002}
    with sessions() as session:
        assert session.scalar(select(func.count(RateLimitEvent.id))) == 1
    # Again: nothing left to delete.
    assert history.forget("me", admin_user_id=1001).total == 0
