"""`lookalike`: the command line for the database, the catalogue, search and the bot."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import NoReturn

from pydantic import ValidationError

from cli import bench as cli_bench
from cli import catalog as cli_catalog
from cli import colour as cli_colour
from cli import db as cli_db
from cli import evaluate as cli_evaluate
from cli import model as cli_model
from cli import sync as cli_sync
from cli.common import (
    EXIT_BAD_INPUT,
    EXIT_ERROR,
    EXIT_OK,
    CommandError,
    format_price,
    print_table,
    read_image_arg,
    result_json,
)
from db import (
    backup_sqlite,
    create_db_engine,
    current_revision,
    downgrade,
    ensure_up_to_date,
    upgrade,
)
from lookalike.composition import open_engine
from lookalike.logs import configure_logging
from lookalike.settings import Settings
from search import (
    CatalogError,
    FieldError,
    InvalidImageError,
    MediaStoreError,
    ModelUnavailableError,
    SearchQuery,
    clean_category,
    clean_price,
)
from web import cli as web_cli

log = logging.getLogger("lookalike")

# Services that log as they run (at LOG_LEVEL); every other command is quiet unless -v.
LONG_RUNNING = frozenset({"bot", "serve"})


# ---- commands ------------------------------------------------------------------------------


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    engine = create_db_engine(settings.database_url)
    if args.db_command == "upgrade":
        upgrade(engine, args.revision)
        print(f"database at revision {current_revision(engine)}")
    elif args.db_command == "downgrade":
        downgrade(engine, args.revision)
        print(f"database at revision {current_revision(engine) or 'base (empty)'}")
    elif args.db_command == "current":
        print(current_revision(engine) or "base (empty)")
    elif args.db_command == "backup":
        source = settings.sqlite_path
        if source is None:
            raise CommandError("db backup works on a SQLite DATABASE_URL only")
        ensure_up_to_date(engine)
        pages = backup_sqlite(source, Path(args.file))
        print(f"backed up {source} to {args.file} ({pages} pages)")
    return EXIT_OK


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    engine = open_engine(settings)
    photo = read_image_arg(Path(args.image))
    max_price: Decimal | None = clean_price(args.max_price) if args.max_price else None
    query = SearchQuery(
        k=args.k,
        category=clean_category(args.category),
        max_price=max_price,
        include_inactive=args.include_out_of_stock,
        metric=args.metric,
        infer_category=False if args.no_infer_category else None,
    )
    engine.models.prepare(photo)  # a bad file is refused before the model loads (seconds)
    engine.warm_up()  # then the model: the reported latency is the search's alone
    result = engine.searcher.search_image(photo, query)
    if args.plot:
        from lookalike.plot import plot_search

        plot_search(photo, result, engine.media.read, Path(args.plot))
    if args.json:
        json.dump(result_json(result, engine, args.image), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    rows = [
        [
            str(item.rank),
            item.product.sku,
            item.product.name,
            format_price(item.product),
            f"{item.distance:.4f}",
            f"{item.similarity:.1f}%",
        ]
        for item in result.items
    ]
    if rows:
        print_table(rows, ["RANK", "SKU", "NAME", "PRICE", "DISTANCE", "SIMILARITY"], sys.stdout)
    else:
        print("no products match (is the catalogue empty, or are the filters too narrow?)")
    if result.inferred_category:
        print(
            f"category {result.inferred_category!r} inferred from the nearest products "
            "(--no-infer-category to search all)"
        )
    print(
        f"search {result.search_id} took {result.latency_ms:.0f} ms "
        f"({result.model_name}, {result.metric})"
    )
    if args.plot:
        print(f"plot saved to {args.plot}")
    return EXIT_OK


def cmd_bot(args: argparse.Namespace, settings: Settings) -> int:
    from bot.application import MissingTokenError
    from bot.run import run_bot

    try:
        return run_bot(settings)
    except MissingTokenError as exc:
        raise CommandError(str(exc), EXIT_BAD_INPUT) from exc


# ---- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lookalike",
        description="Visual product search: find the catalogue products that look like a photo.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="database migrations and backups")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_commands.add_parser("upgrade", help="apply migrations (default: to the newest)")
    upgrade.add_argument("revision", nargs="?", default="head")
    downgrade = db_commands.add_parser("downgrade", help="revert migrations to REVISION")
    downgrade.add_argument("revision", help="e.g. -1, base or a revision id")
    db_commands.add_parser("current", help="print the database's migration revision")
    backup = db_commands.add_parser("backup", help="consistent copy of a live SQLite database")
    backup.add_argument("file", help="where to write the copy")
    db.set_defaults(handler=cmd_db)
    cli_db.register(db_commands)

    cli_sync.register(cli_catalog.register(commands))

    search = commands.add_parser("search", help="find the products most like a photo")
    search.add_argument("image", help="the query photo")
    search.add_argument("-k", type=int, default=None, help="number of results (default: TOP_K)")
    search.add_argument("--category", help="only this category")
    search.add_argument("--max-price", help="only products at or under this price")
    search.add_argument(
        "--include-out-of-stock", action="store_true", help="also out-of-stock and removed products"
    )
    search.add_argument(
        "--metric",
        choices=["cosine", "euclidean", "inner_product"],
        help="distance to rank by (default: SEARCH_METRIC)",
    )
    search.add_argument(
        "--no-infer-category",
        action="store_true",
        help="do not guess the category from the nearest products",
    )
    search.add_argument("--json", action="store_true", help="machine-readable output")
    search.add_argument("--plot", metavar="OUT.png", help="save the query and results as a picture")
    search.set_defaults(handler=cmd_search)

    cli_model.register(commands)
    cli_colour.register(commands)

    bot = commands.add_parser("bot", help="run the Telegram bot")
    bot.set_defaults(handler=cmd_bot)

    web_cli.register(commands)
    cli_evaluate.register(commands)
    cli_bench.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        print(f"error: invalid settings: {problems}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.verbose:
        settings = settings.model_copy(update={"log_level": "DEBUG"})
    elif args.command not in LONG_RUNNING:
        # A command prints its result or one `error:` line; what it did step by step is -v.
        settings = settings.model_copy(update={"log_level": "WARNING"})
    configure_logging(settings)
    if args.command == "search" and args.k is not None and not 1 <= args.k <= 100:
        print("error: -k must be between 1 and 100", file=sys.stderr)
        return EXIT_BAD_INPUT
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    try:
        return handler(args, settings)
    except (InvalidImageError, FieldError) as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    except CatalogError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    except CommandError as exc:
        return _fail(str(exc), exc.code)
    except MediaStoreError as exc:
        return _fail(str(exc), EXIT_ERROR)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        # `lookalike search --json | head`: the reader left; not an error worth a message.
        sys.stderr.close()
        return EXIT_OK
    except ModelUnavailableError as exc:
        return _fail(str(exc), EXIT_ERROR)
    except Exception as exc:
        log.debug("unexpected failure", exc_info=True)
        return _fail(f"unexpected failure: {type(exc).__name__}: {exc} (rerun with -v)", EXIT_ERROR)


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def run() -> NoReturn:
    sys.exit(main())
