"""`lookalike colour backfill`: the colour of the images stored before colours existed."""

from __future__ import annotations

import argparse
from typing import Any

from cli.common import ProgressBar
from lookalike.composition import open_engine
from lookalike.settings import Settings
from search import fill_colours


def register(commands: Any) -> None:
    colour = commands.add_parser("colour", help="the products' colours, computed from their photos")
    actions = colour.add_subparsers(dest="colour_action", required=True, metavar="ACTION")
    backfill = actions.add_parser(
        "backfill",
        help="compute the colour of every stored image that has none yet",
        description=(
            "Reads every product image stored without a colour (a catalogue imported before "
            "colours existed) and stores its colour; resumable, and a no-op once all have one. "
            "New images get theirs as they are added."
        ),
    )
    backfill.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    backfill.set_defaults(handler=cmd_backfill)


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    engine = open_engine(settings)
    with ProgressBar("colours", quiet=args.quiet) as bar:
        summary = fill_colours(engine, progress=bar.advance, on_total=bar.on_total)
    print(f"{summary.computed} image colour(s) computed ({summary.seconds:.1f} s)")
    for image_id, reason in summary.failed[:10]:
        print(f"  image {image_id}: {reason}")
    if summary.failed:
        print(f"{len(summary.failed)} image(s) could not be read; their colour stays unknown")
        return 1
    return 0
