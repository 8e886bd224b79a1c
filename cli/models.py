"""`lookalike model ...` and `lookalike reindex`: the backbones whose vectors the catalogue
holds, which one searches use, and switching to another one."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from db import repository as repo
from lookalike.app import open_engine
from lookalike.settings import Settings
from search.backbones import BACKBONES, get_backbone


def register(commands: Any) -> None:
    model = commands.add_parser("model", help="the feature models: build, list, refit")
    actions = model.add_subparsers(dest="model_action", required=True)
    build = actions.add_parser("build", help="build (or load) and cache a backbone's model")
    build.add_argument(
        "--backbone", choices=sorted(BACKBONES), help="default: the active model's backbone"
    )
    actions.add_parser("list", help="stored models: vectors, state, which one is active")
    actions.add_parser(
        "refit", help="fit the active model's post-processing again on the whole catalogue"
    )
    model.set_defaults(handler=cmd_model)

    reindex = commands.add_parser(
        "reindex",
        help="compute every image's vector with another backbone, then switch searches to it",
        description=(
            "Computes the vectors of --model for every product image (resumable: run it again "
            "after an interruption) and switches searches to it only once every image has one. "
            "Until then searches keep using the current model."
        ),
    )
    reindex.add_argument("--model", required=True, choices=sorted(BACKBONES), metavar="NAME")
    reindex.add_argument("--batch-size", type=int, default=0, help="images per model batch")
    reindex.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    reindex.set_defaults(handler=cmd_reindex)


def cmd_model(args: argparse.Namespace, settings: Settings) -> int:
    if args.model_action == "build":
        from search.extractor import KerasExtractor

        engine = open_engine(settings)
        backbone = args.backbone or engine.models.active.backbone.name
        extractor = KerasExtractor.load(
            models_dir=settings.models_dir,
            backbone=backbone,
            weights=settings.model_weights,
            seed=settings.model_seed,
            runtime=settings.model_runtime,
        )
        extractor.warm_up()
        print(f"model ready: {backbone}, {extractor.dim} values per image ({extractor.source})")
        return 0
    engine = open_engine(settings)
    if args.model_action == "refit":
        engine.models.refit()
        print(f"post-processing of {engine.models.active.name} fitted again")
        return 0
    with engine.sessions() as session:
        images = repo.count_images(session)
        rows = [
            (
                row.name,
                str(row.dim),
                f"{repo.count_embeddings(session, model_name=row.name)}/{images}",
                row.state,
                "active" if row.active else "",
            )
            for row in repo.list_models(session)
        ]
    from cli.common import print_table

    print_table(rows, ["MODEL", "DIM", "VECTORS", "STATE", ""], sys.stdout)
    return 0


def cmd_reindex(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from search.reindex import reindex

    spec = get_backbone(args.model)
    engine = open_engine(settings)
    bar: tqdm[Any] | None = None

    def on_total(total: int) -> None:
        nonlocal bar
        if not args.quiet:
            bar = tqdm(total=total, unit="img", desc=f"reindex {spec.model_name}", file=sys.stderr)

    def progress(n: int) -> None:
        if bar is not None:
            bar.update(n)

    try:
        summary = reindex(
            engine,
            args.model,
            batch_size=args.batch_size or settings.inference_batch_size,
            progress=progress,
            on_total=on_total,
        )
    finally:
        if bar is not None:
            bar.close()
    print(
        f"{summary.model_name}: {summary.computed} vector(s) computed, {summary.already} already "
        f"stored; searches now use {engine.models.active.name} ({summary.seconds:.1f} s)"
    )
    return 0
