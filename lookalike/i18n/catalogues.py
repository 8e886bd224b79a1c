"""Keeping the catalogues in step with the code: extract the English messages, merge them into
each language's .po, compile the .mo files, and check that every catalogue is complete.

    python -m lookalike.i18n.catalogues update    # extract, merge into the .po files, compile
    python -m lookalike.i18n.catalogues compile   # .po -> .mo only
    python -m lookalike.i18n.catalogues check     # exit 1 with the problems, one a line

`make translations` runs `update`; `tests/test_i18n.py` runs the checks. Translators then edit
the .po files (new messages arrive empty, changed ones marked fuzzy) and run `compile`.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

from lookalike.i18n import DOMAIN, LANGUAGES, LOCALE_DIR, SOURCE_LANGUAGE

ROOT = Path(__file__).resolve().parents[2]
# Where customer-facing text is written: the bot, the web server, its page and widget, the
# feed sync's report (shown to admins in the bot), and the words they share (lookalike/i18n:
# the colour names).
SOURCES = ("bot", "web", "feed", "lookalike/i18n")
METHODS = [
    ("**.py", "python"),
    ("static/**.js", "javascript"),
    ("static/index.html", "lookalike.i18n.catalogues:extract_marked_html"),
]
# N_("..."): a constant; t("..."): translated at once; t.n("one", "many", count): plural;
# _("...") in the page's JavaScript.
KEYWORDS = {"N_": None, "t": None, "n": (1, 2), "_": None}
_PLACEHOLDER = re.compile(r"\{(\w*)[^{}]*\}")
_MARKED = re.compile(r"<(\w+)[^>]*\bdata-i18n\b[^>]*>([^<]+)</\1>")


def extract_marked_html(
    fileobj: IO[bytes], keywords: Any, comment_tags: Any, options: Any
) -> Iterator[tuple[int, str, str, list[str]]]:
    """A Babel extractor for HTML: the text of every element marked `data-i18n` (spaces
    collapsed, as the browser shows it)."""
    text = fileobj.read().decode("utf-8")
    for match in _MARKED.finditer(text):
        lineno = text.count("\n", 0, match.start()) + 1
        yield lineno, "", " ".join(match[2].split()), []


def extract() -> Catalog:
    """Every marked message of SOURCES, as a template catalogue (sorted, no line numbers)."""
    template = Catalog(
        project="lookalike", locale=None, fuzzy=False, msgid_bugs_address="the project's issues"
    )
    for folder in SOURCES:
        found = extract_from_dir(
            ROOT / folder,
            method_map=METHODS,
            keywords=KEYWORDS,
            comment_tags=("Translators:",),
            strip_comment_tags=True,
        )
        for filename, lineno, message, comments, context in found:
            template.add(message, locations=[(f"{folder}/{filename}", lineno)],
                         auto_comments=comments, context=context)  # fmt: skip
    return template


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalogue(language: str) -> Catalog:
    with po_path(language).open("rb") as handle:
        return read_po(handle, locale=language, domain=DOMAIN)


def compiled(catalogue: Catalog) -> bytes:
    buffer = io.BytesIO()
    write_mo(buffer, catalogue)
    return buffer.getvalue()


def translations() -> tuple[str, ...]:
    return tuple(language for language in LANGUAGES if language != SOURCE_LANGUAGE)


def update() -> None:
    """Merge the extracted messages into each .po (new ones empty, changed ones fuzzy), then
    compile."""
    template = extract()
    for language in translations():
        path = po_path(language)
        path.parent.mkdir(parents=True, exist_ok=True)
        catalogue = read_catalogue(language) if path.exists() else Catalog(locale=language)
        catalogue.update(template, no_fuzzy_matching=False, update_creation_date=False)
        catalogue.msgid_bugs_address = template.msgid_bugs_address
        with path.open("wb") as handle:
            write_po(handle, catalogue, omit_header=False, sort_output=True, width=100,
                     no_location=True, ignore_obsolete=True)  # fmt: skip
    compile_all()


def compile_all() -> None:
    for language in translations():
        po_path(language).with_suffix(".mo").write_bytes(compiled(read_catalogue(language)))


def placeholders(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


def _forms(message: Message) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the English forms, the translated forms): one of each, or a plural's several."""
    ids = message.id if isinstance(message.id, (tuple, list)) else (message.id,)
    strings = message.string if isinstance(message.string, (tuple, list)) else (message.string,)
    return tuple(str(i) for i in ids), tuple(str(s or "") for s in strings)


def problems() -> Iterator[str]:
    """Everything that keeps a catalogue from being complete and correct, one line each."""
    template = extract()
    for language in translations():
        catalogue = read_catalogue(language)
        where = po_path(language).relative_to(ROOT)
        for wanted in template:
            if not wanted.id:
                continue
            message = catalogue.get(wanted.id, wanted.context)
            if message is None:
                yield f"{where}: missing {wanted.id!r}"
                continue
            ids, strings = _forms(message)
            if message.fuzzy or not all(strings):
                yield f"{where}: not translated (or fuzzy) {wanted.id!r}"
                continue
            if message.pluralizable and len(strings) != catalogue.num_plurals:
                yield f"{where}: {len(strings)} plural forms, wants {catalogue.num_plurals}"
            expected = set().union(*(placeholders(i) for i in ids))
            for text in strings:
                if placeholders(text) != expected:
                    yield f"{where}: placeholders {placeholders(text)} != {expected} in {text!r}"
        extra = {m.id for m in catalogue if m.id} - {m.id for m in template if m.id}
        for unused in sorted(map(str, extra)):
            yield f"{where}: not in the code any more {unused!r}"
        mo = po_path(language).with_suffix(".mo")
        if not mo.is_file() or mo.read_bytes() != compiled(catalogue):
            yield f"{mo.relative_to(ROOT)}: not the compiled .po (make translations)"


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    if command == "update":
        update()
    elif command == "compile":
        compile_all()
    elif command == "check":
        found = list(problems())
        for line in found:
            print(line)
        return 1 if found else 0
    else:
        print("usage: python -m lookalike.i18n.catalogues update|compile|check", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
