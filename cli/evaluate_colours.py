"""`lookalike evaluate --colours FILE --images DIR`: colour P@k and category+colour P@k of every
method without colour and with the live colour blend (COLOUR_WEIGHT), on the colour-labelled
photos as a closed catalogue; `--rankings OUT.json` writes each query's top-k file names for the
live chain with colour, to be scored against anyone's labels; `--plot OUT.png` draws a few of
those queries with their results and colour chips. See docs/evaluation.md."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from lookalike.settings import Settings
    from search.evaluation import ColourScores, EvaluationOptions, Method


def register_options(ev: argparse.ArgumentParser) -> None:
    """The colour options of `lookalike evaluate`."""
    ev.add_argument(
        "--colours",
        metavar="FILE.csv",
        help="CSV with the columns file,colour (the main colour by eye, one of the 17 names): "
        "also report colour and category+colour P@k on those photos (needs --images)",
    )
    ev.add_argument("--images", metavar="DIR", help="--colours: the folder holding those photos")
    ev.add_argument(
        "--colour-weight",
        type=float,
        default=None,
        metavar="W",
        help="--colours: the blend's weight w in [0, 1] (default: COLOUR_WEIGHT)",
    )
    ev.add_argument(
        "--rankings",
        metavar="OUT.json",
        help="--colours: write each query's top-k file names for the live chain with colour",
    )
    ev.add_argument(
        "--plot",
        metavar="OUT.png",
        help="--colours: draw a few queries (a seeded choice) with their top-k of the live chain "
        "with colour, each photo with its named colour's chip, its label and a tick or cross",
    )
    ev.add_argument(
        "--plot-queries",
        type=int,
        default=6,
        metavar="N",
        help="--plot: how many queries (default 6)",
    )


def check_options(args: argparse.Namespace) -> None:
    from search.evaluation import EvaluationError

    if args.colours and not args.images:
        raise EvaluationError("--colours needs --images DIR, the folder of those photos")
    if not args.colours and (
        args.images or args.rankings or args.plot or args.colour_weight is not None
    ):
        raise EvaluationError(
            "--images, --rankings, --plot and --colour-weight go with --colours FILE"
        )
    if not 1 <= args.plot_queries <= 50:
        raise EvaluationError(f"--plot-queries must be 1 to 50, not {args.plot_queries}")
    if args.colour_weight is not None and not 0.0 <= args.colour_weight <= 1.0:
        raise EvaluationError(f"--colour-weight must be in [0, 1], not {args.colour_weight}")


@dataclass(frozen=True)
class ColourReport:
    photos: int  # colour-labelled photos found among the vectors: the closed catalogue
    k: int
    weight: float
    rows: list[ColourScores]  # every method at w = 0, then at w
    live_name: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "photos": self.photos,
            "k": self.k,
            "colour_weight": self.weight,
            "live": self.live_name,
            "methods": [row.to_dict() for row in self.rows],
        }


def colour_report(
    args: argparse.Namespace,
    settings: Settings,
    vectors: Any,
    names: list[str],
    labels: list[str],
    methods: list[Method],
    options: EvaluationOptions,
    live: Method,
) -> ColourReport:
    """Scores on the photos of --colours found among the names (matched by file name), and
    --rankings written for the live method when asked."""
    import numpy as np

    from search.evaluation import (
        EvaluationError,
        colour_neighbours,
        describe_files,
        plot_rankings,
        read_colour_labels,
        score_colours,
    )

    colour_of = read_colour_labels(Path(args.colours))
    rows_of = [i for i, name in enumerate(names) if Path(name).name in colour_of]
    if len(rows_of) <= options.k:
        raise EvaluationError(
            f"{len(rows_of)} of the {len(colour_of)} photos of {args.colours} are among the "
            f"evaluated images: more than k={options.k} are needed"
        )
    files = [Path(names[i]).name for i in rows_of]
    subset = np.asarray(vectors)[rows_of]
    categories = [labels[i] for i in rows_of]
    colours = [colour_of[f] for f in files]
    descriptors = describe_files(Path(args.images), files)
    weight = settings.colour_weight if args.colour_weight is None else args.colour_weight
    scored = [m for m in methods if m.rerank != "krr"]  # the colour step follows qe or nothing
    rows: list[ColourScores] = []
    live_top = None
    for w in sorted({0.0, weight}):
        for method in scored:
            top = colour_neighbours(subset, descriptors, method, options, categories, w)
            rows.append(score_colours(top, categories, colours, name=method.name, weight=w))
            if method.name == live.name and w == weight:
                live_top = top
    if (args.rankings or args.plot) and live_top is None:
        raise EvaluationError(f"--rankings, --plot: the live chain {live.name} was not evaluated")
    if args.rankings:
        _write_rankings(Path(args.rankings), files, live_top, live.name, weight)
    if args.plot and live_top is not None:
        plot_rankings(
            Path(args.plot),
            Path(args.images),
            files,
            live_top,
            colours,
            descriptors,
            title=f"{live.name}, colour weight {weight:g}: {args.plot_queries} queries (seed 0) "
            f"and their top {options.k}; chip = named colour, eye = label by eye, "
            "\u2713 = the query's label",
            queries=args.plot_queries,
        )
    return ColourReport(
        photos=len(rows_of),
        k=options.k,
        weight=weight,
        rows=rows,
        live_name=live.name if any(m.name == live.name for m in scored) else None,
    )


def _write_rankings(path: Path, files: list[str], top: Any, method: str, weight: float) -> None:
    from search.evaluation import EvaluationError

    payload = {
        "method": method,
        "colour_weight": weight,
        "k": int(top.shape[1]),
        "rankings": {files[i]: [files[j] for j in row] for i, row in enumerate(top.tolist())},
    }
    try:
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise EvaluationError(f"cannot write the rankings {path}: {exc.strerror}") from exc


def print_colour_report(report: ColourReport, out: TextIO) -> None:
    from cli.common import print_table

    k = report.k
    out.write(
        f"\ncolour, on the {report.photos} colour-labelled photos as the catalogue "
        f"(leave-one-out; w = 0: without colour, w = {report.weight:g}: with the colour blend)\n"
    )
    live = next(
        (r for r in report.rows if r.name == report.live_name and r.weight == report.weight),
        None,
    )
    if live is not None:
        out.write(
            f"what customers get (the live search with colour, {live.name}, w={live.weight:g}): "
            f"colour P@{k} {live.colour:.4f}, category+colour P@{k} {live.category_colour:.4f}\n"
        )
    rows = [
        [
            r.name,
            f"{r.weight:g}",
            f"{r.category:.4f}",
            f"{r.colour:.4f}",
            f"{r.category_colour:.4f}",
        ]
        for r in report.rows
    ]
    print_table(
        rows, ["METHOD", "W", f"CATEGORY P@{k}", f"COLOUR P@{k}", f"CATEGORY+COLOUR P@{k}"], out
    )
