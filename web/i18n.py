"""The page's and the widget's words in the visitor's language: `GET /i18n.json?lang=ru` (or,
without `lang`, the browser's Accept-Language). The page and embed.js load it once, before
they draw anything.

The words are the messages marked `_("...")` in static/app.js and the elements marked
`data-i18n` in static/index.html, translated by the same catalogues as the bot's
(lookalike/i18n); the category names come from each language's vocabulary, the 17 colour names
(the cards' colour and the colour chips, in the engine's order) from the catalogues.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from babel.messages.extract import extract
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from lookalike.i18n import LANGUAGES, from_accept_language, supported, translator
from lookalike.i18n.catalogues import extract_marked_html
from lookalike.i18n.colours import colour_names
from lookalike.i18n.vocabulary import vocabulary

STATIC = resources.files("web") / "static"


@cache
def page_messages() -> tuple[str, ...]:
    """Every English text the page and the widget show, in the order written."""
    found: list[str] = []
    with (STATIC / "app.js").open("rb") as script:
        found += [str(m) for _, m, _, _ in extract("javascript", script, keywords={"_": None})]
    with (STATIC / "index.html").open("rb") as page:
        found += [m for _, _, m, _ in extract_marked_html(page, None, None, None)]
    return tuple(dict.fromkeys(found))


@cache
def words(language: str) -> dict[str, Any]:
    t = translator(language)
    names = vocabulary(language).category_names
    return {
        "language": t.language,
        "direction": "rtl" if t.right_to_left else "ltr",
        "languages": list(LANGUAGES),
        "messages": {message: t(message) for message in page_messages()},
        "categories": dict(names),
        "colours": colour_names(t),
    }


def request_language(request: Request) -> str:
    """`?lang=` when it names a language we have, else the best of Accept-Language, else
    English."""
    chosen = supported(request.query_params.get("lang"))
    return chosen or from_accept_language(request.headers.get("accept-language")) or "en"


def router() -> APIRouter:
    routes = APIRouter()

    @routes.get("/i18n.json", include_in_schema=False)
    async def page_words(request: Request) -> JSONResponse:
        language = request_language(request)
        return JSONResponse(
            words(language),
            headers={"Content-Language": language, "Vary": "Accept-Language"},
        )

    return routes
