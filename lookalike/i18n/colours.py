"""The 17 colour names customers read, in their language: the bot's captions and listing, the
page's cards and colour chips (`/i18n.json`'s "colours").

The engine's names are codes (search.colour.NAMES: "navy" is shown "темно-синий" in Russian);
they are marked here for the catalogues, in the engine's order (tests/test_i18n.py checks the
two agree, and that each translated name is understood back as that colour in a caption).
"""

from __future__ import annotations

from collections.abc import Mapping

from lookalike.i18n import ENGLISH, N_, Translator

COLOUR_NAMES: Mapping[str, str] = {
    "black": N_("black"),
    "white": N_("white"),
    "grey": N_("grey"),
    "beige": N_("beige"),
    "brown": N_("brown"),
    "tan": N_("tan"),
    "red": N_("red"),
    "pink": N_("pink"),
    "orange": N_("orange"),
    "yellow": N_("yellow"),
    "green": N_("green"),
    "blue": N_("blue"),
    "navy": N_("navy"),
    "purple": N_("purple"),
    "gold": N_("gold"),
    "silver": N_("silver"),
    "multicolour": N_("multicolour"),
}


def colour_text(colour: str, t: Translator = ENGLISH) -> str:
    """A colour name as the customer's language says it ("navy": "темно-синий"); a name we do
    not know is shown as it is."""
    return t(COLOUR_NAMES[colour]) if colour in COLOUR_NAMES else colour


def colour_names(t: Translator = ENGLISH) -> dict[str, str]:
    """Every colour code -> its name in `t`'s language, in the engine's order."""
    return {colour: t(name) for colour, name in COLOUR_NAMES.items()}
