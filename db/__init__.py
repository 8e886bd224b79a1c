"""The database below the engine. Doors (bot, web, cli, feed, bench, the roof) import this
facade only (`from db import ...`), for two things:

- their own state, which lives in tables beside the catalogue: a store class per kind, each
  over the engine's `sessionmaker` (`engine.sessions`), each method one short transaction:
  `ApiKeys` (the web API's keys), `RateLimits` (sliding windows shared by every instance),
  `Drafts` (the bot's guided /add), `AppSecrets` (generated once, shared by every
  process), `FeedLedger` (the feed's SKUs, photos and runs), `Leases` (one process at a
  time runs a shared job) and `UserLanguages` (the bot's /language);
- the database's own operations for the command line and the benchmarks: engines and session
  factories, migrations, backup, copy, an embedded PostgreSQL.

The catalogue's tables and the repository are not here: they are the engine's (`search`),
which also exports the records doors render (ProductRecord...).
"""

from db.api_keys import ApiKeyError, ApiKeyRecord, ApiKeys, NewApiKey
from db.app_secrets import AppSecrets
from db.backup import backup_sqlite
from db.copy import CopyError, copy_database
from db.database import create_db_engine, create_session_factory
from db.drafts import DraftRecord, Drafts
from db.embedded_pg import EmbeddedPostgres, free_port
from db.feed_ledger import FeedImageRecord, FeedLedger, FeedRunRecord
from db.leases import Leases
from db.migrate import current_revision, downgrade, ensure_up_to_date, upgrade
from db.pg_process import EmbeddedPostgresError, read_postmaster
from db.rate_limits import RateLimits
from db.user_languages import UserLanguages

__all__ = [
    "ApiKeyError",
    "ApiKeyRecord",
    "ApiKeys",
    "AppSecrets",
    "CopyError",
    "DraftRecord",
    "Drafts",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "FeedImageRecord",
    "FeedLedger",
    "FeedRunRecord",
    "Leases",
    "NewApiKey",
    "RateLimits",
    "UserLanguages",
    "backup_sqlite",
    "copy_database",
    "create_db_engine",
    "create_session_factory",
    "current_revision",
    "downgrade",
    "ensure_up_to_date",
    "free_port",
    "read_postmaster",
    "upgrade",
]
