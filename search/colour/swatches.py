"""How each colour name is drawn: the one table behind the page's swatches
(web/static/style.css, whose swatch rules are `swatch_css()` verbatim: tests/test_colour.py
checks it) and the chips of `lookalike evaluate --plot` (search.evaluation.plot).

A name is drawn as one colour, a metal as a light-to-dark sheen (its middle stop is the colour
of a flat chip), multicolour as a wheel of five colours."""

from __future__ import annotations

__all__ = ["METALS", "SWATCHES", "chip_colour", "swatch_css"]

# name -> its stops, CSS hex colours (a single one: a flat colour)
SWATCHES: dict[str, tuple[str, ...]] = {
    "black": ("#1b1b1b",),
    "white": ("#fff",),
    "grey": ("#9e9e9e",),
    "beige": ("#e6d5b0",),
    "brown": ("#6b4226",),
    "tan": ("#c89b63",),
    "red": ("#c62828",),
    "pink": ("#f06292",),
    "orange": ("#ef6c00",),
    "yellow": ("#fdd835",),
    "green": ("#2e7d32",),
    "blue": ("#1e88e5",),
    "navy": ("#1a2a6c",),
    "purple": ("#7b1fa2",),
    "gold": ("#f5e08a", "#c9a227", "#8f6d12"),
    "silver": ("#f4f4f4", "#b8b8b8", "#7d7d7d"),
    "multicolour": ("#c62828", "#fdd835", "#2e7d32", "#1e88e5", "#7b1fa2"),
}
METALS = frozenset({"gold", "silver"})  # drawn as a sheen: light, the colour at 55%, dark


def chip_colour(name: str) -> str:
    """The flat colour of a chip of `name` (a metal's middle stop; multicolour is a wheel of
    SWATCHES["multicolour"], this is its first slice)."""
    stops = SWATCHES[name]
    return stops[len(stops) // 2] if name in METALS else stops[0]


def swatch_css() -> str:
    """The page's swatch rules, one a name, as web/static/style.css holds them."""
    lines = []
    for name, stops in SWATCHES.items():
        selector = f'.lk-swatch[data-colour="{name}"]'
        if name == "multicolour":
            wheel = ", ".join((*stops, stops[0]))
            lines.append(f"{selector} {{\n  background: conic-gradient({wheel});\n}}")
        elif name in METALS:
            light, middle, dark = stops
            gradient = f"linear-gradient(135deg, {light}, {middle} 55%, {dark})"
            lines.append(f"{selector} {{ background: {gradient}; }}")
        else:
            lines.append(f"{selector} {{ background: {stops[0]}; }}")
    return "\n".join(lines) + "\n"
