"""Admins' guided /add conversations, kept in the database (admin_drafts) instead of in the
process, so each step's message may reach any bot instance.

A draft is at step "photo" (waiting for the product photo; the details may be known already)
or "details" (waiting for the details line; the photo is known). Taking a draft to finish it
is a compare-and-delete on its version (updated_at): when two messages race, on one instance
or two, exactly one of them gets it. A draft unchanged for `timeout_seconds` has expired.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy.orm import Session, sessionmaker
from telegram import Message

from db import DraftRecord, Drafts

log = logging.getLogger(__name__)

Step = Literal["photo", "details"]
PHOTO: Step = "photo"
DETAILS: Step = "details"


@dataclass(frozen=True, slots=True)
class PhotoRef:
    file_id: str
    file_size: int | None
    is_photo: bool  # a Telegram photo: its file_id can be sent back as a photo later

    @classmethod
    def of(cls, message: Message) -> PhotoRef:
        if message.photo:
            size = message.photo[-1]
            return cls(size.file_id, size.file_size, is_photo=True)
        assert message.document is not None
        return cls(message.document.file_id, message.document.file_size, is_photo=False)

    def to_json(self) -> dict[str, Any]:
        return {"file_id": self.file_id, "file_size": self.file_size, "is_photo": self.is_photo}

    @classmethod
    def from_json(cls, data: object) -> PhotoRef | None:
        if not isinstance(data, dict):
            return None
        file_id, size, is_photo = data.get("file_id"), data.get("file_size"), data.get("is_photo")
        if not isinstance(file_id, str) or not isinstance(is_photo, bool):
            return None
        if size is not None and not isinstance(size, int):
            return None
        return cls(file_id, size, is_photo=is_photo)


@dataclass(frozen=True, slots=True)
class Draft:
    """An admin's /add in progress, as read from the database."""

    step: Step
    photo: PhotoRef | None  # set at step "details"
    details: str | None  # the details line typed with /add, checked already; may be None
    expired: bool
    record: DraftRecord

    @property
    def user_id(self) -> int:
        return self.record.user_id


def _data(photo: PhotoRef | None, details: str | None) -> dict[str, Any]:
    return {"photo": photo.to_json() if photo else None, "details": details}


def _draft_of(record: DraftRecord, *, expired: bool) -> Draft | None:
    """The parsed draft; None for a row this code cannot use (then it is dropped)."""
    step = record.step
    photo = PhotoRef.from_json(record.data.get("photo"))
    details = record.data.get("details")
    if step not in (PHOTO, DETAILS) or (details is not None and not isinstance(details, str)):
        return None
    if step == DETAILS and photo is None:
        return None
    return Draft(
        step=PHOTO if step == PHOTO else DETAILS,
        photo=photo,
        details=details,
        expired=expired,
        record=record,
    )


class DraftStore:
    """Blocking (database): handlers call these methods through `SearchEngine.run`."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        timeout_seconds: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._drafts = Drafts(sessions)
        self.timeout = timedelta(seconds=timeout_seconds)
        self._clock = clock

    def get(self, user_id: int) -> Draft | None:
        """The admin's draft, expired or not (see Draft.expired); None if there is none."""
        record = self._drafts.get(user_id)
        if record is None:
            return None
        draft = _draft_of(record, expired=record.age(self._clock()) > self.timeout)
        if draft is None:
            log.warning("dropping an unreadable /add draft of user %s", user_id)
            # Only the version read: a new /add another message started meanwhile stays.
            self._drafts.delete(user_id, updated_at=record.updated_at)
        return draft

    def start(
        self, user_id: int, step: Step, *, photo: PhotoRef | None = None, details: str | None = None
    ) -> None:
        """Start a draft at `step`, replacing any the admin had."""
        self._drafts.save(user_id, step=step, data=_data(photo, details), now=self._clock())

    def advance(self, draft: Draft, step: Step, *, photo: PhotoRef | None) -> bool:
        """Move the draft to `step` with `photo`; False if it changed since it was read."""
        return self._drafts.advance(
            draft.record, step=step, data=_data(photo, draft.details), now=self._clock()
        )

    def take(self, draft: Draft) -> bool:
        """Delete the draft to finish it; False if another message took or changed it first."""
        return self._drafts.delete(draft.user_id, updated_at=draft.record.updated_at)

    def clear(self, user_id: int) -> Draft | None:
        """Delete whatever draft the admin has (/cancel, a new /add); returns it."""
        record = self._drafts.pop(user_id)
        if record is None:
            return None
        return _draft_of(record, expired=record.age(self._clock()) > self.timeout)

    def take_expired(self) -> list[Draft]:
        """Delete the drafts that have timed out and return them (each is returned by one
        instance only: the one whose delete removed it)."""
        taken: list[Draft] = []
        for record in self._drafts.older_than(self._clock() - self.timeout):
            if self._drafts.delete(record.user_id, updated_at=record.updated_at):
                draft = _draft_of(record, expired=True)
                if draft is not None:
                    taken.append(draft)
        return taken
