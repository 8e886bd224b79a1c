"""Customers' data kept only as long as needed, and forgotten on request.

The search log (a customer's pseudonymous reference, the query's vector, the results, their
votes and opened results) is kept SEARCH_LOG_RETENTION_DAYS. `purge_expired` (a daily job
of every door that runs jobs; one process at a time through a database lease) folds the older
rows into anonymous per-day counts (search_daily) and deletes them, so /stats keeps its
all-time figures; `forget` deletes everything one customer's reference is on.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from db import retention
from db.leases import Leases
from db.retention import FoldedRows, ForgottenRows, RetentionConflictError

__all__ = [
    "MIN_RETENTION_DAYS",
    "RETENTION_LEASE",
    "ForgottenRows",
    "PurgeReport",
    "SearchLogRetention",
]

log = logging.getLogger(__name__)

# /stats shows the last 7 days from the log itself (medians, weak share): those rows must stay.
MIN_RETENTION_DAYS = 7
RETENTION_LEASE = "search-log-retention"
# Long enough for a first run over years of log; a crashed holder frees it after this.
LEASE_TTL = timedelta(hours=1)
# A /forget deleting rows of the batch being folded: that batch is folded again, a few times.
CONFLICT_RETRIES = 3


@dataclass(frozen=True, slots=True)
class PurgeReport:
    cutoff: datetime  # rows created before this were folded and deleted
    searches: int
    feedback: int
    opens: int


class SearchLogRetention:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        retention_days: int,
        clock: Callable[[], datetime],
    ) -> None:
        if retention_days < MIN_RETENTION_DAYS:
            raise ValueError(
                f"the search log must be kept at least {MIN_RETENTION_DAYS} days "
                f"(/stats shows the last 7 days from it), not {retention_days}"
            )
        self.retention_days = retention_days
        self._sessions = sessions
        self._leases = Leases(sessions)
        self._clock = clock
        # Who holds the lease: this process and this object (two engines in one process are
        # two holders).
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def purge_expired(self) -> PurgeReport | None:
        """Fold the search-log rows older than the retention period into per-day counts and
        delete them with their feedback and opens, in batches of one transaction each.
        None: another process is doing it right now (it holds the lease)."""
        now = self._clock()
        cutoff = now - timedelta(days=self.retention_days)
        if not self._leases.take(RETENTION_LEASE, self._holder, now=now, ttl=LEASE_TTL):
            return None
        try:
            total = self._fold_all(cutoff)
        finally:
            self._leases.release(RETENTION_LEASE, self._holder, now=self._clock())
        if total.searches:
            log.info(
                "search log: %d search(es) older than %d days folded into daily counts",
                total.searches,
                self.retention_days,
            )
        return PurgeReport(
            cutoff=cutoff, searches=total.searches, feedback=total.feedback, opens=total.opens
        )

    def _fold_all(self, cutoff: datetime) -> FoldedRows:
        total = FoldedRows()
        conflicts = 0
        while True:
            try:
                with self._sessions.begin() as session:
                    batch = retention.fold_searches_before(session, cutoff=cutoff)
            except RetentionConflictError:  # rolled back: fold that batch again
                conflicts += 1
                if conflicts > CONFLICT_RETRIES:
                    raise
                continue
            if not batch.searches:
                return total
            total += batch

    def forget(self, user_ref: str, *, admin_user_id: int | None = None) -> ForgottenRows:
        """Delete every row carrying this customer's reference (and, for an admin, their /add
        draft, keyed by their user id), in one transaction. Again: nothing left to delete."""
        with self._sessions.begin() as session:
            return retention.forget_user(session, user_ref=user_ref, admin_user_id=admin_user_id)
