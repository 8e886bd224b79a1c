"""`lookalike model ...` and `lookalike reindex`: the backbones whose vectors the catalogue
holds, which one searches use, and switching to another one."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cli.common import ProgressBar, print_table
from lookalike.composition import featurizer_provider, open_engine, served_weights
from lookalike.settings import Settings
from search import refeaturize, refeaturize_reason
from search.featurize import (
    BACKBONES,
    ModelLoader,
    RuntimeDecision,
    backbone_of_model_name,
    get_backbone,
)


def register(commands: Any) -> None:
    model = commands.add_parser("model", help="the feature models: build, list, refit")
    actions = model.add_subparsers(dest="model_action", required=True)
    build = actions.add_parser(
        "build",
        help="build (or load) a backbone's model, export it and choose its runtime on this CPU",
    )
    build.add_argument(
        "--backbone", choices=sorted(BACKBONES), help="default: the active model's backbone"
    )
    build.add_argument(
        "--measure-again",
        action="store_true",
        help="measure the runtimes again even if this CPU's choice is recorded",
    )
    build.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    actions.add_parser(
        "list", help="stored models: vectors, state, which one is active, runtime chosen"
    )
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
        return _build(args, settings)
    engine = open_engine(settings)
    if args.model_action == "refit":
        engine.models.refit()
        print(f"post-processing of {engine.models.active.name} fitted again")
        return 0
    models = engine.stored_models()
    loader = featurizer_provider(settings)
    rows = [
        (
            model.name,
            str(model.dim),
            f"{model.vectors}/{model.images}",
            model.state,
            "active" if model.active else "",
            f"{model.weights or '?'} on {model.runtime or '?'}",
            _runtime_cell(loader, model.name, settings.model_runtime),
        )
        for model in models
    ]
    headers = ["MODEL", "DIM", "VECTORS", "STATE", "", "VECTORS FROM", "RUNTIME"]
    print_table(rows, headers, sys.stdout)
    for model in models:
        decision = loader.recorded_decision(backbone_of_model_name(model.name))
        if decision is not None:
            print(f"\n{model.name}: runtimes measured on {decision.cpu}")
            _print_trials(decision)
    return 0


def _runtime_cell(loader: ModelLoader, model_name: str, runtime: str) -> str:
    if runtime != "auto":
        return f"{runtime} (MODEL_RUNTIME)"
    backbone = backbone_of_model_name(model_name)
    decision = loader.recorded_decision(backbone)
    if decision is None:
        return "auto: chosen when first loaded"
    if loader.current_decision(backbone) is None:
        return f"auto: measured again when next loaded (was {decision.chosen})"
    return f"auto: {decision.summary()}"


def _print_trials(decision: RuntimeDecision) -> None:
    """Each runtime's speed and fidelity: the gate's figures (ranking space: after the
    post-processing searches rank by), then the raw vectors'."""

    def cosine(value: float | None) -> str:
        return f"{value:.5f}" if value is not None else "-"

    def share(value: float | None) -> str:
        return f"{value:.1%}" if value is not None else "-"

    rows = []
    for trial in decision.trials:
        speed = f"{trial.images_per_s:.1f}" if trial.images_per_s is not None else "-"
        verdict = "chosen" if trial.runtime == decision.chosen else "passed"
        rows.append(
            (
                trial.runtime,
                speed,
                cosine(trial.cosine),
                share(trial.top8_overlap),
                cosine(trial.raw_cosine),
                share(trial.raw_top8_overlap),
                trial.refused or verdict,
            )
        )
    headers = ["RUNTIME", "IMAGES/S", "COSINE", "TOP-8 KEPT", "RAW COSINE", "RAW TOP-8", "GATE"]
    print_table(rows, headers, sys.stdout)
    if decision.held_out:
        print(
            f"(COSINE, TOP-8 KEPT: where searches rank, after the post-processing, on the "
            f"{decision.held_out} photos of {decision.photos} int8 was not calibrated on, "
            f"split seed {decision.split_seed}; RAW: the model's vectors as they come out)"
        )
    if decision.weights == "none":
        print("(random weights: the gate checks the mechanism, not what customers would get)")


def _build(args: argparse.Namespace, settings: Settings) -> int:
    """Build (or load) the model, export it, and with MODEL_RUNTIME=auto measure every
    runtime on the catalogue's photos and record the choice for this CPU."""
    engine = open_engine(settings)
    backbone = args.backbone or engine.models.active.backbone.name

    def say(line: str) -> None:
        print(line, file=sys.stderr)

    loader = featurizer_provider(
        settings, calibration_photos=engine.catalog.sample_photos, progress=say
    )
    featurizer = loader.build(backbone, measure_again=args.measure_again)
    decision = loader.recorded_decision(backbone) if settings.model_runtime == "auto" else None
    if decision is not None:
        print(f"runtime: {decision.summary()}")
        _print_trials(decision)
    weights = served_weights(settings)
    reason = refeaturize_reason(engine, featurizer, weights=weights) if weights else None
    if weights and reason:
        # Queries and the catalogue's vectors from the same model and runtime: computed
        # again here, switched in one transaction; searches use the old ones until then.
        print(f"the catalogue's vectors were {reason}: featurising them again")
        with ProgressBar("featurise again", quiet=args.quiet) as bar:
            summary = refeaturize(
                engine,
                featurizer,
                weights=weights,
                batch_size=settings.inference_batch_size,
                progress=bar.advance,
                on_total=bar.on_total,
            )
        print(
            f"{summary.computed} vector(s) of {summary.model_name} now from {summary.current} "
            f"(were {summary.previous}; {summary.seconds:.1f} s)"
        )
    runtime = getattr(featurizer, "runtime", settings.model_runtime)
    source = getattr(featurizer, "source", "")
    print(f"model ready: {backbone}, {featurizer.dim} values per image, on {runtime} ({source})")
    return 0


def cmd_reindex(args: argparse.Namespace, settings: Settings) -> int:
    from search import reindex

    spec = get_backbone(args.model)
    engine = open_engine(settings)
    with ProgressBar(f"reindex {spec.model_name}", quiet=args.quiet) as bar:
        summary = reindex(
            engine,
            args.model,
            batch_size=args.batch_size or settings.inference_batch_size,
            progress=bar.advance,
            on_total=bar.on_total,
        )
    print(
        f"{summary.model_name}: {summary.computed} vector(s) computed, {summary.already} already "
        f"stored; searches now use {engine.models.active.name} ({summary.seconds:.1f} s)"
    )
    return 0
