"""API keys of the web API: create, list, revoke, and find the key a presented secret belongs to.

A key's secret is `lk_` + 43 url-safe characters (256 random bits); only its sha256 is stored,
so a copy of the database does not hand out working keys. One short transaction per call;
times are UTC and come from the caller (`now`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.tables import ApiKey

__all__ = ["ApiKeyError", "ApiKeyRecord", "ApiKeys", "NewApiKey"]

SECRET_PREFIX = "lk_"
SHOWN_PREFIX_LENGTH = 10  # "lk_" + 7 characters: enough to tell keys apart in a list


class ApiKeyError(ValueError):
    """A key cannot be created or revoked; the message is one line, safe to print."""


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: int
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class NewApiKey:
    record: ApiKeyRecord
    secret: str  # shown once, never stored


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _record(row: ApiKey) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


class ApiKeys:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def create(self, name: str, *, now: datetime) -> NewApiKey:
        """A new key named `name` (unique among all keys, revoked ones included)."""
        name = name.strip()
        if not name or len(name) > 64:
            raise ApiKeyError("a key name must be 1 to 64 characters")
        with self._sessions.begin() as session:
            if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
                raise ApiKeyError(f"a key named {name!r} already exists")
            secret = SECRET_PREFIX + secrets.token_urlsafe(32)
            row = ApiKey(
                name=name,
                secret_hash=hash_secret(secret),
                prefix=secret[:SHOWN_PREFIX_LENGTH],
                created_at=now,
            )
            session.add(row)
            session.flush()
            return NewApiKey(record=_record(row), secret=secret)

    def revoke(self, name_or_id: str, *, now: datetime) -> ApiKeyRecord:
        """Revoke the key with this name (or numeric id); revoking twice keeps the first time."""
        with self._sessions.begin() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.name == name_or_id))
            if row is None and name_or_id.isdigit():
                row = session.get(ApiKey, int(name_or_id))
            if row is None:
                raise ApiKeyError(f"no API key named {name_or_id!r}")
            if row.revoked_at is None:
                row.revoked_at = now
            return _record(row)

    def verify(self, secret: str, *, now: datetime) -> ApiKeyRecord | None:
        """The active key whose secret this is (its last use set to `now`), else None.

        The lookup is by the secret's sha256: comparing hashes of a 256-bit secret leaks nothing
        useful through timing, so no constant-time compare is needed."""
        if not secret.startswith(SECRET_PREFIX) or len(secret) > 200:
            return None
        with self._sessions.begin() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.secret_hash == hash_secret(secret)))
            if row is None or row.revoked_at is not None:
                return None
            row.last_used_at = now
            return _record(row)

    # Last: below this line, `list` in the class body would name this method, not the builtin.
    def list(self) -> list[ApiKeyRecord]:
        """Every key, oldest first (revoked ones too)."""
        with self._sessions.begin() as session:
            return [_record(row) for row in session.scalars(select(ApiKey).order_by(ApiKey.id))]
