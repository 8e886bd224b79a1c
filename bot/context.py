"""What handlers reach through `context.bot_data`: typed, never globals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from telegram import User
from telegram.ext import CallbackContext, ExtBot

from db import UserLanguages
from lookalike.i18n import Translator, translator
from lookalike.limits import SEARCH, user_ref
from lookalike.settings import Settings
from search import Requester, SearchEngine

if TYPE_CHECKING:
    from bot.drafts import DraftStore
    from lookalike.limits import RateLimiter


@dataclass
class BotServices:
    settings: Settings
    engine: SearchEngine
    rate_limiter: RateLimiter  # shared by every instance (in the database)
    drafts: DraftStore  # admins' guided /add, in the database
    user_ref_key: bytes  # HMAC key for opaque user references in the search log
    languages: UserLanguages  # languages chosen with /language, in the database
    # True under `lookalike serve` (the webhook): the server runs the engine and its upkeep.
    hosted: bool = False

    def user_ref(self, user_id: int) -> str:
        """An opaque, stable reference for a Telegram user (the search log stores no ids)."""
        return user_ref(self.user_ref_key, str(user_id))

    async def translator_for(self, user: User | None) -> Translator:
        """The language to answer `user` in: the one they chose with /language, else their
        Telegram client's (language_code), else English."""
        if user is None:
            return translator(None)
        return await self.translator_for_id(user.id, user.language_code)

    async def translator_for_id(self, user_id: int, language_code: str | None) -> Translator:
        """The same for a user known by id only (a scheduled job has no message)."""
        chosen = await self.engine.run(self.languages.get, self.user_ref(user_id))
        return translator(chosen or language_code)

    async def within_limit(self, user_id: int) -> float | None:
        """None if the user may search now (and it counts), else seconds until they may."""
        return await self.engine.run(self.rate_limiter.try_acquire, SEARCH, self.user_ref(user_id))

    def who(self, user_id: int, source: str = "telegram") -> Requester:
        """A Telegram user as the search log knows them."""
        return Requester(user_ref=self.user_ref(user_id), source=source)

    def is_admin(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self.settings.admin_ids

    def is_staff(self, user_id: int | None) -> bool:
        """Support staff; admins are staff too."""
        return user_id is not None and (
            user_id in self.settings.support_ids or user_id in self.settings.admin_ids
        )


class BotData:
    """`context.bot_data`: set up once by build_application."""

    def __init__(self) -> None:
        self._services: BotServices | None = None

    @property
    def services(self) -> BotServices:
        if self._services is None:
            raise RuntimeError("bot services are not set up (build_application does that)")
        return self._services

    @services.setter
    def services(self, value: BotServices) -> None:
        self._services = value


Context: TypeAlias = CallbackContext[
    ExtBot[None], dict[object, object], dict[object, object], BotData
]
