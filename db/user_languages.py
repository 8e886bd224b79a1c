"""Customers' chosen languages (user_languages): one row per pseudonymous user reference, so
every bot instance answers in the language chosen on any of them. One short transaction per
call; /forget deletes the row with the customer's other data (db/retention.py)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from db.tables import UserLanguage

__all__ = ["UserLanguages"]


class UserLanguages:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def get(self, user_ref: str) -> str | None:
        """The language this user chose, or None (then their client's language applies)."""
        with self._sessions() as session:
            return session.execute(
                select(UserLanguage.language).where(UserLanguage.user_ref == user_ref)
            ).scalar_one_or_none()

    def choose(self, user_ref: str, language: str) -> None:
        """Remember `language` (a code the caller checked) for this user, replacing any."""
        with self._sessions.begin() as session:
            row = session.get(UserLanguage, user_ref)
            if row is None:
                session.add(UserLanguage(user_ref=user_ref, language=language))
            else:
                row.language = language

    def clear(self, user_ref: str) -> None:
        """Follow the client's language again."""
        with self._sessions.begin() as session:
            session.execute(delete(UserLanguage).where(UserLanguage.user_ref == user_ref))
