"""`lookalike evaluate`: leave-one-out search quality on a labelled catalogue.

Two inputs: a folder with one sub-folder per category (featurised with the configured model),
or precomputed vectors (`--vectors FILE.npy --names FILE.txt --labels FILE.csv`). Prints
precision@k, recall@k and mAP@k per method, per category and a confusion summary, or `--json`;
`--chart` draws per-category precision@k bars for each method. See docs/evaluation.md.

With no `--postprocess`, the method scored (beside plain) is the one the live search runs with
the settings (POSTPROCESS, QUERY_EXPANSION, INFER_CATEGORY: sqrt+centre+qe+cat by default), so
the first figure a shop sees is what its customers get.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from cli import evaluate_colours
from cli.common import ProgressBar
from search.index import METRICS

if TYPE_CHECKING:
    from lookalike.settings import Settings
    from search.evaluation import EvaluationReport, Method, MethodReport


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `evaluate` subcommand to the `lookalike` parser."""
    ev = commands.add_parser(
        "evaluate",
        help="measure search quality (leave-one-out precision/recall/mAP@k)",
        description=(
            "Leave-one-out search quality: every labelled image is searched against all the "
            "others; a result is relevant when it has the query's category. Input is FOLDER "
            "(one sub-folder per category, featurised with the configured model) or "
            "--vectors/--names/--labels."
        ),
    )
    ev.add_argument("folder", nargs="?", help="folder with one sub-folder of images per category")
    ev.add_argument("--vectors", metavar="FILE.npy", help="precomputed (n, d) vectors")
    ev.add_argument("--names", metavar="FILE.txt", help="n file names, one a line, same order")
    ev.add_argument("--labels", metavar="FILE.csv", help="CSV with the columns file,category")
    ev.add_argument("-k", type=int, default=8, help="results per query (default: 8)")
    ev.add_argument("--metric", choices=METRICS, default="cosine", help="default: cosine")
    ev.add_argument(
        "--backbone",
        default="vgg16",
        help="FOLDER only: the backbone that featurises the images (vgg16, resnet50, "
        "inception_v3, densenet121, efficientnet_b0; default vgg16)",
    )
    ev.add_argument(
        "--save-vectors",
        metavar="FILE.npy",
        help="FOLDER only: also save the vectors (and FILE.txt with the names) for later runs",
    )
    ev.add_argument(
        "--postprocess",
        default=None,
        metavar="STEPS",
        help=(
            "'none' (plain only), 'all', or a comma-separated list of methods made of the steps "
            "sqrt, centre, whiten, one of qe, krr, and cat joined with '+', e.g. sqrt+centre+qe "
            "(default: plain and what the live search runs with the settings POSTPROCESS, "
            "QUERY_EXPANSION and INFER_CATEGORY, sqrt+centre+qe+cat unless changed)"
        ),
    )
    ev.add_argument(
        "--fit",
        choices=["catalogue", "loo"],
        default="catalogue",
        help=(
            "fit centre/whiten on the whole catalogue, query included, as the live system "
            "would (default), or refit without each query (loo: honest, slower)"
        ),
    )
    ev.add_argument(
        "--qe-neighbours",
        type=int,
        default=None,
        help="qe: neighbours averaged (default: QUERY_EXPANSION, or 3 when that is 0)",
    )
    ev.add_argument("--krr-k1", type=int, default=20, help="krr: reciprocal neighbours (20)")
    ev.add_argument("--krr-k2", type=int, default=6, help="krr: local expansion (6)")
    ev.add_argument("--krr-lambda", type=float, default=0.3, help="krr: original weight (0.3)")
    ev.add_argument("--whiten-dim", type=int, default=None, help="whiten: directions kept (all)")
    ev.add_argument("--shrinkage", type=float, default=1.0, help="whiten: shrinkage (1.0)")
    ev.add_argument("--json", action="store_true", help="machine-readable output")
    ev.add_argument("--chart", metavar="OUT.png", help="per-category precision@k bars")
    ev.add_argument("--batch-size", type=int, default=0, help="images per model batch")
    ev.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    evaluate_colours.register_options(ev)
    ev.set_defaults(handler=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from cli.common import EXIT_BAD_INPUT, EXIT_OK, CommandError
    from search.evaluation import EvaluationError, EvaluationOptions, evaluate, parse_methods

    live = _live_method(settings)
    try:
        options = EvaluationOptions(
            k=args.k,
            metric=args.metric,
            fit=args.fit,
            qe_neighbours=(
                args.qe_neighbours
                if args.qe_neighbours is not None
                else settings.query_expansion or 3
            ),
            krr_k1=args.krr_k1,
            krr_k2=args.krr_k2,
            krr_lambda=args.krr_lambda,
            whiten_dim=args.whiten_dim,
            shrinkage=args.shrinkage,
        )
        methods = parse_methods(live.name if args.postprocess is None else args.postprocess)
        evaluate_colours.check_options(args)
        vectors, names, labels, source, skipped = _load_input(args, settings)
        report = evaluate(vectors, labels, methods, options, source=source, live=live)
        colours = (
            evaluate_colours.colour_report(
                args, settings, vectors, names, labels, methods, options, live
            )
            if args.colours
            else None
        )
    except EvaluationError as exc:
        raise CommandError(str(exc), EXIT_BAD_INPUT) from exc

    if args.chart:
        try:
            plot_evaluation(report, Path(args.chart))
        except OSError as exc:
            raise CommandError(f"cannot write the chart {args.chart}: {exc}") from exc
    if args.json:
        payload = report.to_dict()
        payload["skipped"] = [{"file": name, "reason": reason} for name, reason in skipped]
        if colours is not None:
            payload["colour"] = colours.to_dict()
        json.dump(payload, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_report(report, sys.stdout)
        if colours is not None:
            evaluate_colours.print_colour_report(colours, sys.stdout)
        for name, reason in skipped:
            print(f"  skipped {name}: {reason}")
        if args.chart:
            print(f"chart saved to {args.chart}")
        if args.rankings:
            print(f"rankings of the live chain saved to {args.rankings}")
        if args.plot:
            print(f"plot of the live chain's rankings saved to {args.plot}")
    return EXIT_OK


def _live_method(settings: Settings) -> Method:
    """What the live search runs. The labels are the categories its cat step infers from, as
    a shop's product categories would be, so the step can always run here."""
    from search.evaluation import live_method

    return live_method(
        postprocess=settings.postprocess,
        query_expansion=settings.query_expansion,
        infer_category=settings.infer_category,
        has_categories=True,
    )


def _load_input(
    args: argparse.Namespace, settings: Settings
) -> tuple[Any, list[str], list[str], dict[str, Any], list[tuple[str, str]]]:
    """(vectors, file names, labels, source description, skipped files) from a folder or from
    files."""
    from search.evaluation import EvaluationError, labels_for, read_labels, read_vectors

    precomputed = (args.vectors, args.names, args.labels)
    if args.folder is not None:
        if any(precomputed):
            raise EvaluationError("give either FOLDER or --vectors/--names/--labels, not both")
        return _featurise(Path(args.folder), args, settings)
    if not all(precomputed):
        raise EvaluationError(
            "give a FOLDER of category sub-folders, or all of --vectors, --names and --labels"
        )
    vectors, names = read_vectors(Path(args.vectors), Path(args.names))
    labels = labels_for(names, read_labels(Path(args.labels)))
    source = {"vectors": args.vectors, "names": args.names, "labels": args.labels}
    return vectors, names, labels, source, []


def _featurise(
    folder: Path, args: argparse.Namespace, settings: Settings
) -> tuple[Any, list[str], list[str], dict[str, Any], list[tuple[str, str]]]:
    from lookalike import composition
    from search.evaluation import EvaluationError, featurise_folder
    from search.featurize import get_backbone

    try:
        spec = get_backbone(args.backbone)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from exc
    featurizer = composition.featurizer_provider(settings)(spec.name)
    with ProgressBar("featurising", quiet=args.quiet) as bar:
        data = featurise_folder(
            folder,
            featurizer,
            batch_size=args.batch_size or settings.inference_batch_size,
            max_pixels=settings.max_image_pixels,
            max_bytes=settings.max_image_bytes,
            on_total=bar.on_total,
            progress=bar.advance,
            backbone=spec,
        )
    if args.save_vectors:
        import numpy as np

        target = Path(args.save_vectors)
        np.save(target, data.vectors)
        target.with_suffix(".txt").write_text("\n".join(data.names) + "\n", encoding="utf-8")
    source = {"folder": str(folder), "model": spec.model_name}
    return data.vectors, data.names, data.labels, source, data.skipped


# ---- output --------------------------------------------------------------------------------


def print_report(report: EvaluationReport, out: TextIO) -> None:
    from cli.common import print_table

    k = report.k
    fitted = (
        "fitted on the whole catalogue, query included"
        if report.fit == "catalogue"
        else "refitted without each query"
    )
    out.write(
        f"leave-one-out on {report.vectors} vectors, {len(report.categories)} categories, "
        f"k={k}, metric {report.metric}; centre/whiten {fitted}\n"
    )
    if report.singletons:
        out.write(f"not evaluated as queries (one item only): {', '.join(report.singletons)}\n")
    live = report.live
    if live is not None:
        out.write(
            f"what customers get (the live search, {live.name}): P@{k} {live.precision:.4f}, "
            f"R@{k} {live.recall:.4f}, mAP@{k} {live.map:.4f}\n"
        )
    plain = report.plain
    rows = [
        [
            m.name,
            f"{m.precision:.4f}",
            f"{m.recall:.4f}",
            f"{m.map:.4f}",
            f"{m.macro_precision:.4f}",
            "" if m is plain else f"{m.precision - plain.precision:+.4f}",
        ]
        for m in report.methods
    ]
    out.write("\n")
    print_table(rows, ["METHOD", f"P@{k}", f"R@{k}", f"mAP@{k}", f"MACRO P@{k}", "VS PLAIN"], out)

    best = report.best
    shown = [plain] if best is plain else [plain, best]
    out.write(f"\nper category ({' vs '.join(m.name for m in shown)}):\n")
    headers = ["CATEGORY", "N"]
    for metric in (f"P@{k}", f"R@{k}", f"mAP@{k}"):
        headers += [f"{metric} {m.name}" for m in shown]
    cat_rows = []
    for category, count in report.categories.items():
        if category not in plain.per_category:
            continue
        row = [category, str(count)]
        for attr in ("precision", "recall", "map"):
            row += [f"{getattr(m.per_category[category], attr):.4f}" for m in shown]
        cat_rows.append(row)
    print_table(cat_rows, headers, out)

    for m in shown:
        out.write(f"\nconfusion, {m.name}: share of each category's top-{k} neighbours\n")
        _print_confusion(report, m, out)


def _print_confusion(report: EvaluationReport, method: MethodReport, out: TextIO) -> None:
    from cli.common import print_table

    columns = list(report.categories)
    rows = []
    for category in columns:
        shares = method.confusion.get(category)
        if shares is None:
            continue
        rows.append(
            [category] + [f"{100 * shares[c]:.1f}%" if shares.get(c) else "." for c in columns]
        )
    print_table(rows, ["TRUE \\ NEIGHBOUR", *columns], out)


def plot_evaluation(report: EvaluationReport, out: Path) -> None:
    """Grouped bars: precision@k per category (and overall) for each method."""
    import matplotlib

    matplotlib.use("Agg")  # no screen: render to a file
    import matplotlib.pyplot as plt
    import numpy as np

    groups = [c for c in report.categories if c in report.plain.per_category] + ["overall"]
    methods = report.methods
    width = 0.8 / len(methods)
    x = np.arange(len(groups))
    figure, axis = plt.subplots(
        figsize=(min(16.0, max(8.0, 0.2 * len(groups) * len(methods) + 3)), 5.0)
    )
    for i, method in enumerate(methods):
        values = [
            method.precision if g == "overall" else method.per_category[g].precision for g in groups
        ]
        axis.bar(x - 0.4 + width * (i + 0.5), values, width, label=method.name)
    axis.set_xticks(x)
    axis.set_xticklabels(
        [g if g == "overall" else f"{g}\n({report.categories[g]})" for g in groups], fontsize=8
    )
    axis.set_ylim(0.0, 1.0)
    axis.set_ylabel(f"precision@{report.k}")
    axis.set_title(f"leave-one-out precision@{report.k}, {report.metric}, {report.vectors} images")
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="method")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
