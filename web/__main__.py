"""`python -m web serve|api-key ...`: the web commands on their own (the same as
`lookalike serve|api-key ...` once the main CLI registers them)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lookalike.settings import Settings
from web.cli import register


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m web")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return int(args.handler(args, Settings()))


if __name__ == "__main__":
    sys.exit(main())
