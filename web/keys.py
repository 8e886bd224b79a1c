"""Who may write to the catalogue: the API key in `Authorization: Bearer <secret>`, checked
against the hashed keys in the database (db.api_keys), off the event loop. Also the key
management the `lookalike api-key` commands run (over a plain session factory: no model)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from db import api_keys
from db.api_keys import ApiKeyRecord, NewApiKey
from web.problems import ProblemError

if TYPE_CHECKING:
    from search import SearchEngine

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="lookalike"'}


def utc_now() -> datetime:
    return datetime.now(UTC)


def bearer_secret(authorization: str | None) -> str:
    """The secret of an `Authorization: Bearer ...` header; ProblemError 401 if there is none."""
    if not authorization:
        raise ProblemError(
            401,
            "this needs an API key: send it as 'Authorization: Bearer <key>'",
            kind="unauthorized",
            headers=_CHALLENGE,
        )
    scheme, _, secret = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ProblemError(
            401,
            "the Authorization header must be 'Bearer <key>'",
            kind="unauthorized",
            headers=_CHALLENGE,
        )
    return secret.strip()


class KeyChecker:
    def __init__(self, engine: SearchEngine, session_factory: Callable[[], Session]) -> None:
        self._engine = engine
        self._session_factory = session_factory

    def _verify(self, secret: str) -> ApiKeyRecord | None:
        with self._session_factory() as session:
            record = api_keys.verify_secret(session, secret=secret, now=utc_now())
            session.commit()
            return record

    async def require(self, authorization: str | None) -> ApiKeyRecord:
        """The active key the header carries; ProblemError 401 otherwise (unknown and revoked keys
        get the same answer, so a revoked key's holder learns nothing more)."""
        secret = bearer_secret(authorization)
        record = await self._engine.run(self._verify, secret)
        if record is None:
            raise ProblemError(
                401, "the API key is not valid", kind="unauthorized", headers=_CHALLENGE
            )
        return record


# ---- key management (the `lookalike api-key` commands) ----------------------------------------


def create_key(session_factory: Callable[[], Session], name: str) -> NewApiKey:
    with session_factory() as session:
        new = api_keys.create_key(session, name=name, now=utc_now())
        session.commit()
        return new


def list_keys(session_factory: Callable[[], Session]) -> list[ApiKeyRecord]:
    with session_factory() as session:
        return api_keys.list_keys(session)


def revoke_key(session_factory: Callable[[], Session], name_or_id: str) -> ApiKeyRecord:
    with session_factory() as session:
        record = api_keys.revoke_key(session, name_or_id=name_or_id, now=utc_now())
        session.commit()
        return record
