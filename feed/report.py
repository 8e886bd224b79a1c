"""What a sync did, for people: the summary every door renders (`render_summary`: the CLI
prints it, the bot escapes it), every problem as lines of a report file (`report_lines`,
`lookalike catalog sync --report FILE`), and the last run's line for /stats
(`last_sync_text`).

The frame's words (status, counts' names, "problems of kinds", times) are marked for the
gettext catalogues (lookalike/i18n) and rendered with the reader's Translator, English by
default (the command line); the rows' reasons and the summary's message stay English, as the
feed parser and the sync wrote them.

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
from lookalike.i18n import ENGLISH, N_, Translator
from search import SearchEngine

__all__ = ["SHOWN_ROWS", "last_sync_text", "problem_kinds", "render_summary", "report_lines"]

SHOWN_ROWS = 5
_PARTICULARS = re.compile(r"'[^']*'|\"[^\"]*\"")  # the quoted values of a reason
# The outcome of a product-feed sync (SyncSummary.status; a recorded run may be "running").
STATUS_WORDS = {
    "ok": N_("ok"),
    "dry-run": N_("dry-run"),
    "refused": N_("refused"),
    "failed": N_("failed"),
    "busy": N_("busy"),
    "running": N_("running"),
}
# A sync's counts (SyncSummary.counts, the recorded run's counts): "{name} {count}" each.
COUNT_NAMES = {
    "rows": N_("rows {count}"),
    "products": N_("products {count}"),
    "skipped_rows": N_("skipped_rows {count}"),
    "add": N_("add {count}"),
    "update": N_("update {count}"),
    "stock": N_("stock {count}"),
    "restore": N_("restore {count}"),
    "hide": N_("hide {count}"),
    "kept_removed": N_("kept_removed {count}"),
    "unchanged": N_("unchanged {count}"),
    "images_to_check": N_("images_to_check {count}"),
    "variant_photos": N_("variant_photos {count}"),
    "added": N_("added {count}"),
    "photos_added": N_("photos_added {count}"),
    "images_downloaded": N_("images_downloaded {count}"),
    "images_not_modified": N_("images_not_modified {count}"),
    "images_same_bytes": N_("images_same_bytes {count}"),
    "images_failed": N_("images_failed {count}"),
    "images_rejected": N_("images_rejected {count}"),
    "featurised": N_("featurised {count}"),
    "photos_retired": N_("photos_retired {count}"),
    "not_added": N_("not_added {count}"),
    "change_errors": N_("change_errors {count}"),
}
# The kinds of change in a sync's plan, each followed by its first rows.
CHANGE_NAMES = {
    "add": N_("add: {rows}"),
    "update": N_("update: {rows}"),
    "stock": N_("stock: {rows}"),
    "restore": N_("restore: {rows}"),
    "hide": N_("hide: {rows}"),
}


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


def render_summary(
    summary: SyncSummary, *, shown: int = SHOWN_ROWS, t: Translator = ENGLISH
) -> str:
    """Plain text: the outcome, the counts, the first rows of each kind of change, the first
    problems. Shared by the CLI (English) and the bot (the admin's language; it escapes it)."""
    lines = [f"{status_word(summary.status, t)}: {summary.message}"]
    if summary.counts:
        lines.append(count_figures(summary.counts, summary.counts, t))
    plan = summary.plan
    if plan is not None:
        in_stock, out_of_stock = t("{sku}: in stock"), t("{sku}: out of stock")
        kinds = {
            "add": [
                f"{p.sku} {p.fields.name!r} {p.fields.price} {p.fields.currency}" for p in plan.add
            ],
            "update": [f"{p.sku}: {', '.join(changes)}" for p, changes in plan.update],
            "stock": [
                (in_stock if flag else out_of_stock).format(sku=sku) for sku, flag in plan.stock
            ],
            "restore": list(plan.restore),
            "hide": list(plan.hide),
        }
        for kind, rows in kinds.items():
            if rows:
                more = _more(len(rows) - shown, t)
                lines.append(t(CHANGE_NAMES[kind], rows="; ".join(rows[:shown])) + more)
    if summary.problems:
        problems = problem_kinds(summary.problems)
        lines.append(
            t(
                "{problems} {of_kinds}:",
                problems=t.n("{count} problem", "{count} problems", len(summary.problems)),
                of_kinds=t.n("of {count} kind", "of {count} kinds", len(problems)),
            )
        )
        for kind, labels in problems[: 2 * shown]:
            more = _more(len(labels) - shown, t)
            lines.append(f"  {t.number(len(labels))} × {kind}: {'; '.join(labels[:shown])}{more}")
        if len(problems) > 2 * shown:
            extra = len(problems) - 2 * shown
            lines.append(
                "  " + t.n("... and {count} more kind", "... and {count} more kinds", extra)
            )
    lines.append(t("in {seconds} s", seconds=t.number(summary.seconds, decimals=1)))
    return "\n".join(lines) + "\n"


def last_sync_text(
    engine: SearchEngine, *, now: datetime | None = None, t: Translator = ENGLISH
) -> str:
    """One or two plain-text lines on the last sync, for /stats (blocking: engine.run)."""
    run = FeedStore(engine.sessions).last_run()
    if run is None:
        return t("Feed sync: never run.")
    now = now or datetime.now(UTC)
    minutes = max(0, int((now - run.started_at).total_seconds() // 60))
    if minutes < 120:
        ago = t("{minutes} min ago", minutes=t.number(minutes))
    else:
        ago = t("{hours} h ago", hours=t.number(minutes // 60))
    keys = ("added", "update", "stock", "hide", "restore", "featurised", "images_failed")
    when = run.started_at.strftime("%Y-%m-%d %H:%M")
    status = status_word(run.status, t)
    line = t("Feed sync: {status} {ago} ({when} UTC)", status=status, ago=ago, when=when)
    figures = count_figures(run.counts, keys, t)
    if figures:
        line += f": {figures}"
    if run.status == "running" and run.finished_at is None:
        line += " " + t("(still running, or killed: the next sync finishes it)")
    if run.errors:
        first = run.errors[0]
        line += "\n" + t.n(
            "{count} problem, e.g. {label}: {reason}",
            "{count} problems, e.g. {label}: {reason}",
            len(run.errors),
            label=first["label"],
            reason=str(first["reason"])[:120],
        )
    elif run.message and run.status != "ok":
        line += f"\n{run.message[:200]}"
    return line


def status_word(status: str, t: Translator = ENGLISH) -> str:
    """ "ok", "refused"... in the reader's language (an unknown status as written)."""
    word = STATUS_WORDS.get(status)
    return t(word) if word is not None else status


def count_figures(counts: dict[str, int], keys: Iterable[str], t: Translator = ENGLISH) -> str:
    """ "added 6, update 0" for the keys present in counts, in order (a key without a name in
    COUNT_NAMES as written)."""
    figures = []
    for key in keys:
        if key in counts:
            name = COUNT_NAMES.get(key)
            value = t.number(counts[key])
            figures.append(t(name, count=value) if name else f"{key} {value}")
    return ", ".join(figures)


def _more(extra: int, t: Translator) -> str:
    """ " (+7 more)" when rows were left out, else ""."""
    return " " + t("(+{count} more)", count=t.number(extra)) if extra > 0 else ""
