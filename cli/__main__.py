"""`python -m cli` is the `lookalike` command."""

from cli.main import run

run()
