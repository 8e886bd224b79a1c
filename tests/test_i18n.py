"""The languages: every catalogue complete, its placeholders and plural forms those of English,
its .mo the compiled .po; the language chosen from Telegram's code or Accept-Language; numbers
and prices written per locale; captions understood in each language (real sentences)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot.handlers.customer import HELP
from bot.handlers.privacy import forgotten_text
from bot.query import parse_caption
from lookalike.i18n import LANGUAGES, from_accept_language, supported, translator
from lookalike.i18n.catalogues import problems
from search import ForgottenRows

CATEGORIES = ("boot", "heel", "heeled_sandal", "rain_boot", "sandal", "sneaker")


def test_every_catalogue_is_complete_with_english_placeholders_and_compiled() -> None:
    assert list(problems()) == []


def test_untranslated_or_unknown_falls_back_to_english_never_to_a_key() -> None:
    assert translator("pt-BR").language == "en"
    assert translator(None)(HELP) == HELP
    assert translator("ru")("a message no catalogue has") == "a message no catalogue has"
    assert translator("ru")(HELP).startswith("<b>Как искать</b>")


@pytest.mark.parametrize(
    ("tag", "language"),
    [("ru", "ru"), ("ru-RU", "ru"), ("ES", "es"), ("es_419", "es"), ("fa-IR", "fa"),
     ("pt-BR", None), ("", None), ("r", None), ("../fa", None)],
)  # fmt: skip
def test_a_language_tag_names_a_supported_language(tag: str, language: str | None) -> None:
    assert supported(tag) == language


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("fa-IR,fa;q=0.9,en-US;q=0.8,en;q=0.7", "fa"),
        ("de-DE,de;q=0.9,ru;q=0.8,en;q=0.5", "ru"),
        ("en;q=0.4, es;q=0.6", "es"),
        ("ru;q=0, es", "es"),
        ("ru;q=bogus, es;q=0.1", "es"),
        ("de, pt", None),
        (None, None),
    ],
)
def test_accept_language_picks_the_best_supported_language(
    header: str | None, language: str | None
) -> None:
    assert from_accept_language(header) == language


def test_prices_numbers_and_percentages_follow_the_locale() -> None:
    price = Decimal("78.99")
    assert translator("en").price(price, "EUR") == "€78.99"
    assert translator("ru").price(price, "EUR") == "78,99\xa0€"
    assert translator("es").price(price, "EUR") == "78,99\xa0€"
    assert translator("fa").price(price, "EUR") == "\u200e€\xa0۷۸٫۹۹"
    assert translator("ru").number(Decimal("1234.5")) == "1\xa0234,5"
    assert translator("en").percent(87.4) == "87%"
    assert translator("ru").percent(87.4) == "87\xa0%"
    assert translator("fa").percent(87.4) == "۸۷٪"


def test_plural_forms_per_language() -> None:
    def deleted(language: str, n: int) -> str:
        return forgotten_text(ForgottenRows(searches=n, feedback=1), translator(language))

    assert [f"{n} {word}," in deleted("en", n) for n, word in
            ((1, "search"), (2, "searches"), (5, "searches"))] == [True] * 3  # fmt: skip
    for n, words in ((1, "1 поиск,"), (3, "3 поиска,"), (5, "5 поисков,"), (21, "21 поиск,")):
        assert words in deleted("ru", n)
    assert "1 búsqueda," in deleted("es", 1) and "2 búsquedas," in deleted("es", 2)
    assert "۳ جستجو," in deleted("fa", 3) and "۱ امتیاز" in deleted("fa", 3)


@pytest.mark.parametrize(
    ("caption", "category", "max_price"),
    [
        # Russian: case endings, "до", "дешевле", "не дороже", "или дешевле"
        ("красные сапоги до 60", "boot", "60"),
        ("Резиновые сапоги дешевле 45,50 €", "rain_boot", "45.50"),
        ("хочу кроссовки не дороже 1 200 рублей", "sneaker", "1200"),
        ("босоножки на каблуке 80 евро или дешевле", "heeled_sandal", "80"),
        ("ищу туфли", "heel", None),
        ("что-нибудь до 30", None, "30"),
        # Spanish: plurals, accents or none, "menos de", "hasta", "o menos"
        ("botas de lluvia por menos de 60", "rain_boot", "60"),
        ("Zapatillas hasta 40 €", "sneaker", "40"),
        ("sandalias de tacón 50 euros o menos", "heeled_sandal", "50"),
        ("unas botas más baratas que 99,90", "boot", "99.90"),
        ("zapatos de tacon", "heel", None),
        # Persian: Persian digits and decimal sign, the zero-width non-joiner, Arabic letters
        ("چکمه‌های بارانی زیر ۶۰ یورو", "rain_boot", "60"),
        ("کفش‌های ورزشی ارزان‌تر از ۴۵٫۵", "sneaker", "45.5"),
        ("صندل تا 30", "sandal", "30"),
        ("كفش پاشنه بلند", "heel", None),
        # English as before, and a caption in no language we know
        ("boots under 60", "boot", "60"),
        ("bootsy", None, None),
        ("Schuhe unter 60", None, None),
    ],
)
def test_captions_are_understood_in_each_language(
    caption: str, category: str | None, max_price: str | None
) -> None:
    found = parse_caption(caption, CATEGORIES)  # its colour: tests/test_bot_query.py
    assert (found.category, found.max_price) == (
        category,
        Decimal(max_price) if max_price else None,
    )


def test_every_language_names_every_demo_category() -> None:
    from lookalike.i18n.vocabulary import vocabulary

    for language in LANGUAGES[1:]:
        names = vocabulary(language).category_names
        assert set(CATEGORIES) <= set(names), language


def test_every_colour_name_is_translated_and_understood_back() -> None:
    # The bot names a result's colour in the customer's language; a customer who types that
    # word in a caption gets that colour (search.colour's synonyms know these languages).
    from lookalike.i18n.colours import COLOUR_NAMES, colour_text
    from search.colour import NAMES, parse_colour_synonym

    assert tuple(COLOUR_NAMES) == NAMES
    for language in LANGUAGES:
        t = translator(language)
        for name in NAMES:
            shown = colour_text(name, t)
            assert parse_colour_synonym(shown) == name, (language, name, shown)
    assert colour_text("navy", translator("fa")) == "سرمه‌ای"
