"""The sync's view of the world before it plans: the catalogue (through the engine) and what
earlier syncs remembered (db.FeedLedger, in the catalogue's database), in the feed's own
types; and the sync's lease (db.Leases), held under a name that says which process holds it.
Blocking calls: the sync runs them through engine.run."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db import FeedImageRecord, FeedLedger, FeedRunRecord, Leases
from feed.diff import CatalogueProduct, OwnedState, StoredImage
from search import SearchEngine

LEASE_NAME = "feed-sync"


def _process_space() -> str:
    """Where a pid means this process: the host name and the pid namespace (containers on
    one host may share a host name but never a pid namespace)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        namespace = "?"
    return f"{socket.gethostname()[:60]}/{namespace}"


def new_holder() -> str:
    """This process's lease holder name: where, pid and a random part (pids are reused)."""
    return f"{_process_space()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_is_dead(holder: str) -> bool:
    """True when `holder` was a process of this host and pid namespace that no longer runs
    (killed), so its lease may be taken over before it expires."""
    space, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if space != _process_space() or space.endswith("/?") or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def catalogue_snapshot(engine: SearchEngine) -> dict[str, CatalogueProduct]:
    return {
        product.sku: CatalogueProduct(
            fields=product.fields,
            in_stock=product.in_stock,
            removed=product.removed,
            image_hashes=frozenset(image.content_hash for image in product.images),
            photo_variants={image.content_hash: image.variant for image in product.images},
            photo_colours={image.content_hash: image.colour_name for image in product.images},
        )
        for product in engine.catalog.products(include_removed=True)
    }


class FeedStore:
    """db.FeedLedger and the "feed-sync" lease over the engine's sessions, one short
    transaction per call."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._ledger = FeedLedger(sessions)
        self._leases = Leases(sessions)

    def owned(self) -> dict[str, OwnedState]:
        return {
            sku: OwnedState(hidden_by_feed=hidden) for sku, hidden in self._ledger.owned().items()
        }

    def images(self) -> dict[tuple[str, str], StoredImage]:
        return {
            (row.sku, row.url): StoredImage(row.etag, row.last_modified, row.content_hash)
            for row in self._ledger.images()
        }

    def claim(self, skus: Iterable[str], now: datetime) -> int:
        return self._ledger.claim(skus, now=now)

    def set_hidden(self, sku: str, *, hidden: bool) -> None:
        self._ledger.set_hidden(sku, hidden=hidden)

    def save_images(self, records: Iterable[FeedImageRecord], now: datetime) -> None:
        self._ledger.save_images(records, now=now)

    def forget_images(self, sku: str, *, keep: Iterable[str]) -> int:
        return self._ledger.forget_images(sku, keep=keep)

    def start_run(self, *, source: str, forced: bool, now: datetime) -> int:
        return self._ledger.start_run(source=source, forced=forced, now=now)

    def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        counts: dict[str, Any],
        errors: list[dict[str, Any]],
        message: str | None,
        now: datetime,
    ) -> None:
        self._ledger.finish_run(
            run_id, status=status, counts=counts, errors=errors, message=message, now=now
        )

    def close_killed_runs(self, *, current: int, now: datetime) -> list[tuple[int, datetime]]:
        return self._ledger.close_killed_runs(current=current, now=now)

    def unaudited_additions(self, *, since: datetime, action: str) -> list[str]:
        return self._ledger.unaudited_additions(since=since, action=action)

    def last_run(self) -> FeedRunRecord | None:
        return self._ledger.last_run()

    def take_lease(self, holder: str, *, now: datetime, ttl: timedelta) -> str | None:
        """None when taken; else who holds it. A holder that was killed on this host is
        replaced at once rather than after its lease expires."""
        if self._leases.take(LEASE_NAME, holder, now=now, ttl=ttl):
            return None
        current = self._leases.holder(LEASE_NAME, now=now)
        if current is None:  # it expired just now: try once more
            taken = self._leases.take(LEASE_NAME, holder, now=now, ttl=ttl)
            return None if taken else "another process"
        if holder_is_dead(current) and self._leases.replace_holder(
            LEASE_NAME, old=current, new=holder, now=now, ttl=ttl
        ):
            return None
        return current

    def renew_lease(self, holder: str, *, now: datetime, ttl: timedelta) -> bool:
        return self._leases.renew(LEASE_NAME, holder, now=now, ttl=ttl)

    def release_lease(self, holder: str, *, now: datetime) -> None:
        self._leases.release(LEASE_NAME, holder, now=now)
