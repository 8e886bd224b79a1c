"""Who may write to the catalogue: the API key in `Authorization: Bearer <secret>`, checked
against the hashed keys in the database (db.ApiKeys), off the event loop."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from db import ApiKeyRecord, ApiKeys
from lookalike.i18n import N_
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
            N_("this needs an API key: send it as 'Authorization: Bearer <key>'"),
            kind="unauthorized",
            headers=_CHALLENGE,
        )
    scheme, _, secret = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ProblemError(
            401,
            N_("the Authorization header must be 'Bearer <key>'"),
            kind="unauthorized",
            headers=_CHALLENGE,
        )
    return secret.strip()


class KeyChecker:
    def __init__(self, engine: SearchEngine, sessions: sessionmaker[Session]) -> None:
        self._engine = engine
        self._keys = ApiKeys(sessions)

    def _verify(self, secret: str) -> ApiKeyRecord | None:
        return self._keys.verify(secret, now=utc_now())

    async def require(self, authorization: str | None) -> ApiKeyRecord:
        """The active key the header carries; ProblemError 401 otherwise (unknown and revoked keys
        get the same answer, so a revoked key's holder learns nothing more)."""
        secret = bearer_secret(authorization)
        record = await self._engine.run(self._verify, secret)
        if record is None:
            raise ProblemError(
                401, N_("the API key is not valid"), kind="unauthorized", headers=_CHALLENGE
            )
        return record
