"""`lookalike evaluate` (to be filled in)."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `evaluate` subcommand to the `lookalike` parser."""
