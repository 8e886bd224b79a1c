"""db.quality (online quality per model and metric), db.result_opens, and the stores of the rate
limit (db.RateLimits) and /add drafts (db.Drafts), on a real migrated database, without the
model."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db import Drafts, RateLimits, result_opens
from db import repository as repo
from db.database import create_db_engine, create_session_factory
from db.migrate import ensure_up_to_date
from db.quality import ModelQuality, quality_by_model
from db.tables import RateLimitEvent, SearchLog
from lookalike.settings import Settings

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(settings.database_url)
    ensure_up_to_date(engine)
    try:
        yield create_session_factory(engine)
    finally:
        engine.dispose()


def log_search(
    session: Session, *, model: str = "vgg16_avgpool", metric: str = "cosine", at: datetime = NOW
) -> tuple[int, str]:
    """A logged search with 8 results (products 1..8); its id and share token."""
    entry = repo.log_search(
        session,
        user_ref="u",
        source="telegram",
        query_hash=None,
        model_name=model,
        filters={},
        results=[{"product_id": i, "image_id": i, "distance": 0.1 * i} for i in range(1, 9)],
        latency_ms=10.0,
        metric=metric,
    )
    entry.created_at = at
    session.flush()
    assert entry.share_token is not None
    return entry.id, entry.share_token


def test_quality_per_model_and_metric_counts_each_search_once(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        busy, busy_token = log_search(session)
        log_search(session)
        old, old_token = log_search(session, at=NOW - timedelta(days=30))
        _, euclid_token = log_search(session, metric="euclidean")
        log_search(session, model="efficientnet_b0", metric="cosine")
        # One search with 3 votes and 2 opens: a join of both would count 6 of each.
        for user, vote in (("a", 1), ("b", 1), ("c", -1)):
            repo.record_feedback(session, search_id=busy, user_ref=user, vote=vote)
        for rank in (1, None):
            assert result_opens.record_open(
                session, share_token=busy_token, rank=rank, user_ref="a", now=NOW
            )
        repo.record_feedback(session, search_id=old, user_ref="a", vote=-1)
        result_opens.record_open(session, share_token=old_token, rank=3, user_ref="a", now=NOW)
        result_opens.record_open(session, share_token=euclid_token, rank=8, user_ref="z", now=NOW)
        session.commit()

        recent = quality_by_model(session, since=NOW - timedelta(days=7))
        everything = quality_by_model(session)

    assert recent == [
        ModelQuality("vgg16_avgpool", "cosine", searches=2, thumbs_up=2, thumbs_down=1, opens=2),
        ModelQuality("efficientnet_b0", "cosine", searches=1, thumbs_up=0, thumbs_down=0, opens=0),
        ModelQuality("vgg16_avgpool", "euclidean", 1, thumbs_up=0, thumbs_down=0, opens=1),
    ]
    assert everything[0] == ModelQuality("vgg16_avgpool", "cosine", 3, 2, 2, 3)
    assert everything[0].thumbs_up_rate == 0.5 and everything[0].opens_per_search == 1.0
    assert recent[1].thumbs_up_rate is None and recent[1].opens_per_search == 0.0
    assert {(row.model_name, row.metric) for row in everything} == {
        (row.model_name, row.metric) for row in recent
    }


def test_an_open_needs_a_real_search_and_rank(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        search_id, token = log_search(session)
        opened = result_opens.record_open(session, share_token=token, rank=8, user_ref="u", now=NOW)
        assert opened == result_opens.OpenedResult(search_id, product_id=8, rank=8)
        for bad_rank in (0, 9):
            assert (
                result_opens.record_open(
                    session, share_token=token, rank=bad_rank, user_ref="u", now=NOW
                )
                is None
            )
        assert (
            result_opens.record_open(session, share_token="x" * 16, rank=1, user_ref="u", now=NOW)
            is None
        )
        session.commit()
        assert result_opens.opens_of(session, search_id=search_id) == [opened]
        assert result_opens.logged_ranks(session, search_id=search_id) == {
            i: i for i in range(1, 9)
        }


def test_rate_slots_slide_and_old_events_are_pruned(sessions: sessionmaker[Session]) -> None:
    window = timedelta(seconds=60)

    def take(user: str, at: datetime) -> float | None:
        return RateLimits(sessions).take_slot(user, now=at, window=window, limit=2)

    assert take("a", NOW) is None
    assert take("a", NOW + timedelta(seconds=10)) is None
    assert take("a", NOW + timedelta(seconds=20)) == pytest.approx(40.0)
    assert take("b", NOW + timedelta(seconds=20)) is None  # per user
    assert take("a", NOW + timedelta(seconds=61)) is None  # the first left the window
    with sessions() as session:
        count = session.scalar(select(func.count()).select_from(RateLimitEvent))
    assert count == 3  # a at 10 s and 61 s, b at 20 s; the event at 0 s was pruned


def test_a_draft_is_taken_by_one_message_only(sessions: sessionmaker[Session]) -> None:
    drafts = Drafts(sessions)
    drafts.save(7, step="photo", data={"details": None}, now=NOW)
    seen = drafts.get(7)
    assert seen is not None and seen.age(NOW + timedelta(seconds=5)) == timedelta(seconds=5)
    # One message moves it on; a second one that read the same version cannot.
    assert drafts.advance(seen, step="details", data={"photo": 1}, now=NOW + timedelta(seconds=1))
    assert not drafts.advance(
        seen, step="details", data={"photo": 2}, now=NOW + timedelta(seconds=2)
    )
    assert not drafts.delete(7, updated_at=seen.updated_at)
    current = drafts.get(7)
    assert current is not None and current.step == "details" and current.data == {"photo": 1}
    assert drafts.older_than(NOW + timedelta(seconds=1)) == []
    assert drafts.older_than(NOW + timedelta(seconds=2)) == [current]
    assert drafts.delete(7, updated_at=current.updated_at)
    assert drafts.get(7) is None
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(SearchLog)) == 0


def test_a_draft_is_popped_once(sessions: sessionmaker[Session]) -> None:
    """/cancel and a new /add: whatever the admin had is deleted and returned, once."""
    drafts = Drafts(sessions)
    drafts.save(7, step="photo", data={"details": "x"}, now=NOW)
    drafts.save(7, step="details", data={"details": "y"}, now=NOW + timedelta(seconds=1))
    popped = drafts.pop(7)
    assert popped is not None and popped.step == "details" and popped.data == {"details": "y"}
    assert drafts.pop(7) is None and drafts.get(7) is None
    assert not drafts.delete(7)
