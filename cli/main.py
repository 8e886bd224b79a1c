"""`lookalike`: the command line for the database, the catalogue, search and the bot."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn, TextIO

from pydantic import ValidationError

from db.media import MediaStoreError
from db.records import ProductRecord
from lookalike import cli_bench, cli_db, cli_evaluate, cli_models
from lookalike.app import configure_logging, open_service
from lookalike.settings import Settings
from search.featurizer import ModelUnavailableError
from search.fields import FieldError, clean_category, clean_price, clean_product_fields, clean_sku
from search.preprocess import InvalidImageError
from search.service import CatalogError, SearchResult, SearchService

log = logging.getLogger("lookalike")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2


class CommandError(Exception):
    """A failure to report in one line, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


# ---- output helpers ------------------------------------------------------------------------


def format_price(product: ProductRecord) -> str:
    return f"{product.price} {product.currency}" if product.price is not None else "-"


def print_table(rows: Sequence[Sequence[str]], headers: Sequence[str], out: TextIO) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out.write(line.rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def product_json(product: ProductRecord, service: SearchService) -> dict[str, Any]:
    return {
        "id": product.id,
        "sku": product.sku,
        "name": product.name,
        "price": str(product.price) if product.price is not None else None,
        "currency": product.currency,
        "url": product.url,
        "category": product.category,
        "in_stock": product.in_stock,
        "removed": product.removed,
        "images": [str(service.media.path_for(image.file_name)) for image in product.images],
        "created_at": product.created_at.isoformat(),
        "updated_at": product.updated_at.isoformat(),
    }


def result_json(result: SearchResult, service: SearchService, query: str) -> dict[str, Any]:
    return {
        "query": query,
        "search_id": result.search_id,
        "latency_ms": round(result.latency_ms, 1),
        "model": result.model_name,
        "metric": result.metric,
        "inferred_category": result.inferred_category,
        "filters": result.filters,
        "results": [
            {
                "rank": item.rank,
                **product_json(item.product, service),
                "image": str(service.media.path_for(item.image.file_name)),
                "distance": round(item.distance, 6),
                "similarity": round(item.similarity, 2),
            }
            for item in result.items
        ],
    }


def read_image_arg(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}", EXIT_BAD_INPUT) from exc


# ---- commands ------------------------------------------------------------------------------


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from db import migrate
    from db.engine import create_db_engine

    engine = create_db_engine(settings.database_url)
    if args.db_command == "upgrade":
        migrate.upgrade(engine, args.revision)
        print(f"database at revision {migrate.current_revision(engine)}")
    elif args.db_command == "downgrade":
        migrate.downgrade(engine, args.revision)
        print(f"database at revision {migrate.current_revision(engine) or 'base (empty)'}")
    elif args.db_command == "current":
        print(migrate.current_revision(engine) or "base (empty)")
    elif args.db_command == "backup":
        from db.backup import backup_sqlite

        source = settings.sqlite_path
        if source is None:
            raise CommandError("db backup works on a SQLite DATABASE_URL only")
        migrate.ensure_up_to_date(engine)
        pages = backup_sqlite(source, Path(args.file))
        print(f"backed up {source} to {args.file} ({pages} pages)")
    return EXIT_OK


def cmd_catalog(args: argparse.Namespace, settings: Settings) -> int:
    service = open_service(settings)
    out = sys.stdout
    command = args.catalog_command
    if command == "import":
        return _catalog_import(args, settings, service)
    if command == "add":
        fields = clean_product_fields(
            sku=args.sku,
            name=args.name,
            price=args.price,
            currency=args.currency or settings.currency,
            url=args.url,
            category=args.category,
        )
        outcome = service.add_product(fields, read_image_arg(Path(args.image)))
        product = outcome.product
        if outcome.created_product:
            print(f"added {product.sku}: {product.name} ({format_price(product)})")
        elif outcome.created_image:
            print(f"added another image to {product.sku} ({len(product.images)} images)")
        else:
            print(f"{product.sku} already has this image; nothing changed")
        for near in outcome.near_duplicates:
            print(
                f"warning: looks almost the same as {near.product.sku} "
                f"({near.product.name}), distance {near.distance:.4f}"
            )
        return EXIT_OK
    if command == "remove":
        product = service.remove_product(clean_sku(args.sku))
        print(f"removed {product.sku} from search results (kept in the database)")
    elif command == "restore":
        product = service.restore_product(clean_sku(args.sku))
        print(f"restored {product.sku}: {product.status}")
    elif command == "stock":
        product = service.set_stock(clean_sku(args.sku), in_stock=args.state == "in")
        print(f"{product.sku} is now {product.status}")
    elif command == "show":
        product = service.require_product(clean_sku(args.sku))
        if args.json:
            json.dump(product_json(product, service), out, indent=2)
            out.write("\n")
        else:
            for key, value in product_json(product, service).items():
                shown = ", ".join(value) if isinstance(value, list) else value
                out.write(f"{key:>11}: {shown if shown is not None else '-'}\n")
    elif command == "list":
        products = service.list_products(
            include_removed=args.all, category=clean_category(args.category)
        )
        if args.json:
            json.dump([product_json(p, service) for p in products], out, indent=2)
            out.write("\n")
        else:
            rows = [
                [p.sku, p.name, format_price(p), p.category or "-", p.status, str(len(p.images))]
                for p in products
            ]
            print_table(rows, ["SKU", "NAME", "PRICE", "CATEGORY", "STATUS", "IMAGES"], out)
            out.write(f"{len(products)} product(s)\n")
    elif command == "export":
        _catalog_export(args, service)
    return EXIT_OK


def _catalog_import(args: argparse.Namespace, settings: Settings, service: SearchService) -> int:
    from tqdm import tqdm

    from search.catalog_import import import_catalog

    bar = tqdm(total=0, unit="img", desc="importing", disable=args.quiet or None, file=sys.stderr)

    def on_total(total: int) -> None:
        bar.total = total
        bar.refresh()

    try:
        summary = import_catalog(
            service,
            Path(args.directory),
            csv_path=Path(args.csv) if args.csv else None,
            currency=settings.currency,
            batch_size=args.batch_size or settings.inference_batch_size,
            progress=bar.update,
            on_total=on_total,
        )
    finally:
        bar.close()
    rate = summary.featurised / summary.seconds if summary.seconds else 0.0
    print(
        f"added {len(summary.added)}, images added {len(summary.images_added)}, "
        f"updated {len(summary.updated)}, unchanged {len(summary.unchanged)}, "
        f"skipped {len(summary.skipped)} in {summary.seconds:.1f} s "
        f"({summary.featurised} featurised, {rate:.1f} images/s)"
    )
    for label, reason in summary.skipped:
        print(f"  skipped {label}: {reason}")
    return EXIT_OK


def _catalog_export(args: argparse.Namespace, service: SearchService) -> None:
    products = service.list_products(include_removed=args.all)
    buffer = io.StringIO()
    if args.format == "json":
        json.dump([product_json(p, service) for p in products], buffer, indent=2)
        buffer.write("\n")
    else:
        # The same columns `catalog import --csv` reads, plus the status columns.
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(
            ["sku", "name", "price", "currency", "url", "category", "image", "in_stock", "removed"]
        )
        for p in products:
            image = str(service.media.path_for(p.images[0].file_name)) if p.images else ""
            writer.writerow(
                [
                    p.sku,
                    p.name,
                    p.price if p.price is not None else "",
                    p.currency,
                    p.url or "",
                    p.category or "",
                    image,
                    int(p.in_stock),
                    int(p.removed),
                ]
            )
    if args.output and args.output != "-":
        Path(args.output).write_text(buffer.getvalue(), encoding="utf-8")
        print(f"exported {len(products)} product(s) to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(buffer.getvalue())


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    service = open_service(settings)
    query = read_image_arg(Path(args.image))
    _ = service.featurizer  # load the model first: the reported latency is the search's alone
    max_price: Decimal | None = clean_price(args.max_price) if args.max_price else None
    result = service.search_image(
        query,
        k=args.k,
        category=clean_category(args.category),
        max_price=max_price,
        include_inactive=args.include_out_of_stock,
        metric=args.metric,
        infer_category=False if args.no_infer_category else None,
    )
    if args.plot:
        from lookalike.plot import plot_search

        plot_search(query, result, service.media, Path(args.plot))
    if args.json:
        json.dump(result_json(result, service, args.image), sys.stdout, indent=2)
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
    from bot.app import MissingTokenError
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

    catalog = commands.add_parser("catalog", help="fill and maintain the product catalogue")
    cat = catalog.add_subparsers(dest="catalog_command", required=True, metavar="ACTION")
    imp = cat.add_parser("import", help="import a folder of product photos")
    imp.add_argument("directory", help="folder of images; each becomes a product")
    imp.add_argument("--csv", help="product data: sku,name,price,currency,url,category,image")
    imp.add_argument("--batch-size", type=int, default=0, help="images per model batch")
    imp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add = cat.add_parser("add", help="add a product with its photo (or a photo to a product)")
    add.add_argument("image")
    add.add_argument("--sku", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--price", help="e.g. 59.90")
    add.add_argument("--currency", help="3-letter code (default: CURRENCY)")
    add.add_argument("--url", help="product page")
    add.add_argument("--category")
    for name, text in (
        ("remove", "hide from results (kept in the database)"),
        ("restore", "undo remove"),
    ):
        sub = cat.add_parser(name, help=text)
        sub.add_argument("sku")
    stock = cat.add_parser("stock", help="mark a product in or out of stock")
    stock.add_argument("sku")
    stock.add_argument("state", choices=["in", "out"])
    show = cat.add_parser("show", help="one product's details")
    show.add_argument("sku")
    show.add_argument("--json", action="store_true")
    lst = cat.add_parser("list", help="list products")
    lst.add_argument("--all", action="store_true", help="include removed products")
    lst.add_argument("--category")
    lst.add_argument("--json", action="store_true")
    export = cat.add_parser("export", help="export the catalogue as CSV or JSON")
    export.add_argument("-o", "--output", help="file to write (default: standard output)")
    export.add_argument("--format", choices=["csv", "json"], default="csv")
    export.add_argument("--all", action="store_true", help="include removed products")
    catalog.set_defaults(handler=cmd_catalog)

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

    cli_models.register(commands)

    bot = commands.add_parser("bot", help="run the Telegram bot")
    bot.set_defaults(handler=cmd_bot)

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
