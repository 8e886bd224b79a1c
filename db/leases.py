"""Named leases (job_leases): one process at a time runs a shared job (the feed sync, the
search log's retention), whichever instance that is.

Each call is one short transaction that is committed before it returns: a lease is only
useful once others can see it. Times are UTC and come from the caller (`now`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.database import as_utc
from db.tables import JobLease

__all__ = ["Leases"]


def _changed(result: object) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


class Leases:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def take(self, name: str, holder: str, *, now: datetime, ttl: timedelta) -> bool:
        """Hold the lease `name` until now + ttl if it is free, expired or already ours.

        The UPDATE's condition is evaluated by the database on the row itself, so of two
        processes racing for an expired lease exactly one changes the row; the first lease ever
        is an INSERT, and the primary key lets only one of two racing INSERTs through."""
        # Not `sessions.begin()`: the IntegrityError a lost INSERT race raises at the commit is
        # the answer (False), so the commit and its rollback are written out here.
        with self._sessions() as session:
            result = session.execute(
                update(JobLease)
                .where(
                    JobLease.name == name,
                    (JobLease.expires_at <= now) | (JobLease.holder == holder),
                )
                .values(holder=holder, expires_at=now + ttl)
                .execution_options(synchronize_session=False)
            )
            if _changed(result) == 1:
                session.commit()
                return True
            if session.get(JobLease, name) is not None:
                session.rollback()
                return False
            session.add(JobLease(name=name, holder=holder, expires_at=now + ttl))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                return False
            return True

    def replace_holder(
        self, name: str, *, old: str, new: str, now: datetime, ttl: timedelta
    ) -> bool:
        """Take the lease from `old` (known to be dead), only if `old` still holds it."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(JobLease)
                .where(JobLease.name == name, JobLease.holder == old)
                .values(holder=new, expires_at=now + ttl)
                .execution_options(synchronize_session=False)
            )
            return _changed(result) == 1

    def renew(self, name: str, holder: str, *, now: datetime, ttl: timedelta) -> bool:
        """Extend our lease; False if it is no longer ours (it expired and another took it)."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(JobLease)
                .where(JobLease.name == name, JobLease.holder == holder)
                .values(expires_at=now + ttl)
                .execution_options(synchronize_session=False)
            )
            return _changed(result) == 1

    def release(self, name: str, holder: str, *, now: datetime) -> None:
        """Let others take the lease at once (if it is still ours)."""
        with self._sessions.begin() as session:
            session.execute(
                update(JobLease)
                .where(JobLease.name == name, JobLease.holder == holder)
                .values(expires_at=now)
                .execution_options(synchronize_session=False)
            )

    def holder(self, name: str, *, now: datetime) -> str | None:
        """Who holds the lease now (None: nobody, or it expired)."""
        with self._sessions.begin() as session:
            row = session.get(JobLease, name)
            if row is None or as_utc(row.expires_at) <= now:
                return None
            return row.holder
