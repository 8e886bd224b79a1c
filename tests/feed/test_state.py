"""The feed's tables (db.FeedLedger through feed.state.FeedStore) and the job lease (db.Leases)
on a real migrated database."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from db import FeedImageRecord, Leases, create_db_engine, create_session_factory, upgrade
from feed.state import FeedStore, holder_is_dead, new_holder
from tests.conftest import database_url_for

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
TTL = timedelta(minutes=5)


def sessions_for(root: Path) -> sessionmaker[Session]:
    engine = create_db_engine(database_url_for(root))
    upgrade(engine)
    return create_session_factory(engine)


def test_only_one_holder_at_a_time_until_the_lease_expires(tmp_path: Path) -> None:
    leases = Leases(sessions_for(tmp_path))
    assert leases.take("job", "a", now=T0, ttl=TTL)
    assert not leases.take("job", "b", now=T0, ttl=TTL)
    assert leases.take("job", "a", now=T0, ttl=TTL)  # renew
    later = T0 + TTL + timedelta(seconds=1)
    assert not leases.renew("job", "b", now=later, ttl=TTL)
    assert leases.take("job", "b", now=later, ttl=TTL)
    assert not leases.renew("job", "a", now=later, ttl=TTL)
    assert leases.holder("job", now=later) == "b"
    assert not leases.replace_holder("job", old="a", new="c", now=later, ttl=TTL)
    leases.release("job", "b", now=later)
    assert leases.holder("job", now=later) is None
    assert leases.take("job", "a", now=later, ttl=TTL)
    assert leases.replace_holder("job", old="a", new="c", now=later, ttl=TTL)
    assert leases.holder("job", now=later) == "c"


def test_racing_processes_never_both_get_the_lease(tmp_path: Path) -> None:
    """Eight threads with their own connections race for a fresh lease, then for an
    expired one: exactly one wins each time."""
    leases = Leases(sessions_for(tmp_path))
    for now in (T0, T0 + 2 * TTL):
        winners: list[str] = []
        barrier = threading.Barrier(8)

        def race(
            name: str,
            now: datetime = now,
            barrier: threading.Barrier = barrier,
            winners: list[str] = winners,
        ) -> None:
            barrier.wait()
            if leases.take("race", name, now=now, ttl=TTL):
                winners.append(name)

        threads = [threading.Thread(target=race, args=(f"h{n}",)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(winners) == 1, winners


def test_a_killed_holder_on_this_host_is_replaced_at_once(tmp_path: Path) -> None:
    store = FeedStore(sessions_for(tmp_path))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead_soon = new_holder().split(":")
        dead_soon[1] = str(child.pid)
        holder = ":".join(dead_soon)
        now = datetime.now(UTC)
        assert store.take_lease(holder, now=now, ttl=TTL) is None
        assert not holder_is_dead(holder)
        assert store.take_lease(new_holder(), now=now, ttl=TTL) == holder  # alive: busy
    finally:
        child.kill()
        child.wait()
    assert holder_is_dead(holder)
    assert store.take_lease(new_holder(), now=now, ttl=TTL) is None


def test_owned_skus_and_photo_validators_are_remembered(tmp_path: Path) -> None:
    store = FeedStore(sessions_for(tmp_path))
    assert store.claim(["A", "B"], T0) == 2
    assert store.claim(["B", "C"], T0) == 1
    store.set_hidden("A", hidden=True)
    assert {sku: state.hidden_by_feed for sku, state in store.owned().items()} == {
        "A": True,
        "B": False,
        "C": False,
    }
    url = "https://img.example/" + "x" * 1900  # long URLs are keyed by their hash
    record = FeedImageRecord("A", url, '"e1"', None, "h1")
    store.save_images([record], T0)
    store.save_images([FeedImageRecord("A", url, '"e2"', "Mon", "h2")], T0)
    images = store.images()
    assert len(images) == 1
    assert images["A", url].etag == '"e2"' and images["A", url].content_hash == "h2"
