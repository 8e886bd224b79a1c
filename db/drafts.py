"""Admins' guided /add conversations (admin_drafts), one row per admin, so each step's message
may reach any bot instance.

A row's version is its updated_at: `advance` and a versioned `delete` change it only if it is
still the version the caller read, so of two racing messages exactly one gets it. One short
transaction per call; times are UTC and come from the caller (`now`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.database import as_utc
from db.tables import AdminDraft

__all__ = ["DraftRecord", "Drafts"]


@dataclass(frozen=True, slots=True)
class DraftRecord:
    user_id: int
    step: str
    data: dict[str, Any]  # the conversation's JSON, e.g. {"photo": {...}, "details": "..."}
    updated_at: datetime  # as stored: what `advance` and `delete` compare with

    def age(self, now: datetime) -> timedelta:
        return now - as_utc(self.updated_at)


def _record(row: AdminDraft) -> DraftRecord:
    return DraftRecord(
        user_id=int(row.user_id),
        step=row.step,
        data=dict(row.data or {}),
        updated_at=row.updated_at,
    )


def _changed(result: object) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


class Drafts:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def get(self, user_id: int) -> DraftRecord | None:
        with self._sessions.begin() as session:
            row = session.get(AdminDraft, user_id)
            return _record(row) if row is not None else None

    def save(self, user_id: int, *, step: str, data: dict[str, Any], now: datetime) -> None:
        """Start a draft, replacing any the admin had."""
        with self._sessions.begin() as session:
            row = session.get(AdminDraft, user_id)
            if row is None:
                session.add(AdminDraft(user_id=user_id, step=step, data=data, updated_at=now))
            else:
                row.step, row.data, row.updated_at = step, data, now

    def advance(
        self, draft: DraftRecord, *, step: str, data: dict[str, Any], now: datetime
    ) -> bool:
        """Move `draft` to its next step, unless it changed since it was read (another message,
        perhaps on another instance, got there first): then False and nothing changes."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(AdminDraft)
                .where(
                    AdminDraft.user_id == draft.user_id, AdminDraft.updated_at == draft.updated_at
                )
                .values(step=step, data=data, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            return _changed(result) == 1

    def delete(self, user_id: int, *, updated_at: datetime | None = None) -> bool:
        """Delete the admin's draft; with `updated_at`, only if it is still that version (so one
        message, on one instance, takes it). True if a row was deleted."""
        statement = delete(AdminDraft).where(AdminDraft.user_id == user_id)
        if updated_at is not None:
            statement = statement.where(AdminDraft.updated_at == updated_at)
        with self._sessions.begin() as session:
            result = session.execute(statement.execution_options(synchronize_session=False))
            return _changed(result) == 1

    def pop(self, user_id: int) -> DraftRecord | None:
        """Delete whatever draft the admin has and return it (None: there was none), reading
        and deleting in one transaction."""
        with self._sessions.begin() as session:
            row = session.get(AdminDraft, user_id)
            if row is None:
                return None
            record = _record(row)
            session.execute(
                delete(AdminDraft)
                .where(AdminDraft.user_id == user_id)
                .execution_options(synchronize_session=False)
            )
            return record

    def older_than(self, before: datetime) -> list[DraftRecord]:
        """Drafts last changed before `before`, by user id."""
        with self._sessions.begin() as session:
            rows = session.scalars(
                select(AdminDraft)
                .where(AdminDraft.updated_at < before)
                .order_by(AdminDraft.user_id)
            )
            return [_record(row) for row in rows]
