"""What a sync did, for people: the summary every door renders (`render_summary`: the CLI
prints it, the bot escapes it), every problem as lines of a report file (`report_lines`,
`lookalike catalog sync --report FILE`), and the last run's line for /stats
(`last_sync_text`).

Problems are shown per kind: a kind is the reason with its quoted values blanked, so 154 rows
refused for one rule read as one line with the first few rows, not as 10 lines of the same
rule and "155 more".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from feed.state import FeedStore
from feed.sync import SyncSummary
from search import SearchEngine

__all__ = ["SHOWN_ROWS", "last_sync_text", "problem_kinds", "render_summary", "report_lines"]

SHOWN_ROWS = 5
_PARTICULARS = re.compile(r"'[^']*'|\"[^\"]*\"")  # the quoted values of a reason


def problem_kinds(problems: Iterable[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """[(kind, labels)], the most frequent kind first (first seen first among equals)."""
    kinds: dict[str, list[str]] = {}
    for label, reason in problems:
        kinds.setdefault(_PARTICULARS.sub("…", reason), []).append(label)
    return sorted(kinds.items(), key=lambda kind: -len(kind[1]))


def report_lines(problems: Iterable[tuple[str, str]]) -> Iterator[str]:
    """Every problem as a tab-separated line (row or photo, reason), after a header line."""
    yield "row\treason\n"
    for label, reason in problems:
        yield f"{' '.join(label.split())}\t{' '.join(reason.split())}\n"


def render_summary(summary: SyncSummary, *, shown: int = SHOWN_ROWS) -> str:
    """Plain text: the outcome, the counts, the first rows of each kind of change, the first
    problems. Shared by the CLI and the bot (which escapes it)."""
    lines = [f"{summary.status}: {summary.message}"]
    if summary.counts:
        lines.append(", ".join(f"{key} {value}" for key, value in summary.counts.items()))
    plan = summary.plan
    if plan is not None:
        kinds = {
            "add": [
                f"{p.sku} {p.fields.name!r} {p.fields.price} {p.fields.currency}" for p in plan.add
            ],
            "update": [f"{p.sku}: {', '.join(changes)}" for p, changes in plan.update],
            "stock": [f"{sku}: {'in' if flag else 'out of'} stock" for sku, flag in plan.stock],
            "restore": list(plan.restore),
            "hide": list(plan.hide),
        }
        for kind, rows in kinds.items():
            if rows:
                more = f" (+{len(rows) - shown} more)" if len(rows) > shown else ""
                lines.append(f"{kind}: {'; '.join(rows[:shown])}{more}")
    if summary.problems:
        problems = problem_kinds(summary.problems)
        lines.append(f"{len(summary.problems)} problem(s) of {len(problems)} kind(s):")
        for kind, labels in problems[: 2 * shown]:
            more = f" (+{len(labels) - shown} more)" if len(labels) > shown else ""
            lines.append(f"  {len(labels)} × {kind}: {'; '.join(labels[:shown])}{more}")
        if len(problems) > 2 * shown:
            lines.append(f"  ... and {len(problems) - 2 * shown} more kinds")
    lines.append(f"in {summary.seconds:.1f} s")
    return "\n".join(lines) + "\n"


def last_sync_text(engine: SearchEngine, *, now: datetime | None = None) -> str:
    """One or two plain-text lines on the last sync, for /stats (blocking: engine.run)."""
    run = FeedStore(engine.sessions).last_run()
    if run is None:
        return "Feed sync: never run."
    now = now or datetime.now(UTC)
    minutes = max(0, int((now - run.started_at).total_seconds() // 60))
    ago = f"{minutes} min ago" if minutes < 120 else f"{minutes // 60} h ago"
    keys = ("added", "update", "stock", "hide", "restore", "featurised", "images_failed")
    figures = ", ".join(f"{key} {run.counts[key]}" for key in keys if key in run.counts)
    line = f"Feed sync: {run.status} {ago} ({run.started_at:%Y-%m-%d %H:%M} UTC)"
    if figures:
        line += f": {figures}"
    if run.status == "running" and run.finished_at is None:
        line += " (still running, or killed: the next sync finishes it)"
    if run.errors:
        line += f"\n{len(run.errors)} problem(s), e.g. {run.errors[0]['label']}: "
        line += str(run.errors[0]["reason"])[:120]
    elif run.message and run.status != "ok":
        line += f"\n{run.message[:200]}"
    return line
