"""`lookalike catalog ...`: import, add, remove, restore, stock, show, list, export."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from cli.common import (
    EXIT_OK,
    ProgressBar,
    format_price,
    print_table,
    product_json,
    read_image_arg,
)
from lookalike.composition import open_engine
from lookalike.settings import Settings
from search import SearchEngine, clean_category, clean_product_fields, clean_sku


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> Any:
    """The `catalog` command; returns its sub-commands, for other doors' actions (sync)."""
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
    return cat


def cmd_catalog(args: argparse.Namespace, settings: Settings) -> int:
    # An import (or add) on a CPU with no runtime measured yet goes on with the provisional
    # runtime instead of measuring for a minute first; `lookalike model build` (which `make
    # catalog` runs after the import) measures and featurises the catalogue again.
    engine = open_engine(settings, measure_first=False)
    out = sys.stdout
    command = args.catalog_command
    if command == "import":
        return _catalog_import(args, settings, engine)
    if command == "add":
        fields = clean_product_fields(
            sku=args.sku,
            name=args.name,
            price=args.price,
            currency=args.currency or settings.currency,
            url=args.url,
            category=args.category,
        )
        outcome = engine.catalog.add(fields, read_image_arg(Path(args.image)))
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
        product = engine.catalog.remove(clean_sku(args.sku))
        print(f"removed {product.sku} from search results (kept in the database)")
    elif command == "restore":
        product = engine.catalog.restore(clean_sku(args.sku))
        print(f"restored {product.sku}: {product.status}")
    elif command == "stock":
        product = engine.catalog.set_stock(clean_sku(args.sku), in_stock=args.state == "in")
        print(f"{product.sku} is now {product.status}")
    elif command == "show":
        product = engine.catalog.require(clean_sku(args.sku))
        if args.json:
            json.dump(product_json(product, engine), out, indent=2)
            out.write("\n")
        else:
            for key, value in product_json(product, engine).items():
                shown = ", ".join(value) if isinstance(value, list) else value
                out.write(f"{key:>11}: {shown if shown is not None else '-'}\n")
    elif command == "list":
        products = engine.catalog.products(
            include_removed=args.all, category=clean_category(args.category)
        )
        if args.json:
            json.dump([product_json(p, engine) for p in products], out, indent=2)
            out.write("\n")
        else:
            rows = [
                [p.sku, p.name, format_price(p), p.category or "-", p.status, str(len(p.images))]
                for p in products
            ]
            print_table(rows, ["SKU", "NAME", "PRICE", "CATEGORY", "STATUS", "IMAGES"], out)
            out.write(f"{len(products)} product(s)\n")
    elif command == "export":
        _catalog_export(args, engine)
    return EXIT_OK


def _catalog_import(args: argparse.Namespace, settings: Settings, engine: SearchEngine) -> int:
    from search import import_directory

    with ProgressBar("importing", quiet=args.quiet) as bar:
        summary = import_directory(
            engine,
            Path(args.directory),
            csv_path=Path(args.csv) if args.csv else None,
            currency=settings.currency,
            batch_size=args.batch_size or settings.inference_batch_size,
            progress=bar.advance,
            on_total=bar.on_total,
        )
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


def _catalog_export(args: argparse.Namespace, engine: SearchEngine) -> None:
    products = engine.catalog.products(include_removed=args.all)
    buffer = io.StringIO()
    if args.format == "json":
        json.dump([product_json(p, engine) for p in products], buffer, indent=2)
        buffer.write("\n")
    else:
        # The same columns `catalog import --csv` reads, plus the status columns.
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(
            [
                "sku",
                "name",
                "price",
                "currency",
                "url",
                "category",
                "image",
                "in_stock",
                "removed",
                "colour",
            ]
        )
        for p in products:
            image = str(engine.media.path_for(p.images[0].file_name)) if p.images else ""
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
                    p.colour or "",
                ]
            )
    if args.output and args.output != "-":
        Path(args.output).write_text(buffer.getvalue(), encoding="utf-8")
        print(f"exported {len(products)} product(s) to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(buffer.getvalue())
