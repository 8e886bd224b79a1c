"""The picture of a few queries' rankings (`lookalike evaluate --colours FILE --images DIR
--plot OUT.png`): one row a query (a seeded choice), its photo then its top-k results of the
live chain with colour, each tile with a chip of its named colour (search.colour, as the
search computes it; drawn as the page's swatches, search.colour.swatches), its colour label by
eye and, for a result, a tick when that label is the query's (the result counts for colour
P@k) or a cross.

The figure is drawn on one axes measured in inches, so its size is exact: (1 + k) tiles of
TILE_INCHES across, one row of tiles a query, HEADER_INCHES for the title, at DPI.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen: render to a file

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.patches import Circle, Rectangle, Wedge
from PIL import Image, UnidentifiedImageError

from search.colour import SWATCHES, chip_colour, name_colours
from search.errors import EvaluationError

__all__ = ["DPI", "HEADER_INCHES", "TILE_INCHES", "plot_rankings", "plot_size"]

TILE_INCHES = (1.6, 2.05)  # (width, height): the photo, then two lines of text under it
HEADER_INCHES = 0.55
DPI = 100
_PHOTO = 1.4  # the photo's box, inches (square)
_WHEEL = SWATCHES["multicolour"]  # multicolour's chip: one slice a colour
_TICK, _CROSS = "\u2713", "\u2717"  # DejaVu Sans, matplotlib's own font, has both


def plot_size(queries: int, k: int) -> tuple[int, int]:
    """The picture's (width, height) in pixels for `queries` rows of 1 + k tiles."""
    width = (1 + k) * TILE_INCHES[0]
    height = queries * TILE_INCHES[1] + HEADER_INCHES
    return round(width * DPI), round(height * DPI)


def choose_queries(n: int, count: int, seed: int) -> list[int]:
    """`count` of the n photos (all when fewer), a seeded choice, in file order."""
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n, size=min(count, n), replace=False))


def plot_rankings(
    out: Path,
    images: Path,
    files: Sequence[str],
    top: npt.NDArray[np.intp],
    labels: Sequence[str],
    descriptors: npt.NDArray[np.float32],
    *,
    title: str,
    queries: int = 6,
    seed: int = 0,
) -> list[int]:
    """Writes the PNG: n files in `images`, (n, k) `top` (indices into files), n colour labels
    by eye, (n, DIM) colour descriptors. Returns the rows of the queries shown."""
    chosen = choose_queries(len(files), queries, seed)
    k = int(top.shape[1])
    named = {i: name_colours(descriptors[i])[0] for i in {*chosen, *top[chosen].ravel().tolist()}}
    width, height = plot_size(len(chosen), k)
    figure = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    board = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    board.set_xlim(0.0, width / DPI)
    board.set_ylim(height / DPI, 0.0)  # inches from the top
    board.axis("off")
    board.text(0.12, HEADER_INCHES / 2, title, va="center", fontsize=9)
    try:
        for row, query in enumerate(chosen):
            top_y = HEADER_INCHES + row * TILE_INCHES[1]
            for column, shown in enumerate([query, *top[query].tolist()]):
                left = column * TILE_INCHES[0]
                same = None if column == 0 else labels[shown] == labels[query]
                _tile(board, images / files[shown], left, top_y, named[shown], labels[shown], same)
            board.add_patch(  # the query's own tile framed
                Rectangle(
                    (0.04, top_y + 0.04),
                    TILE_INCHES[0] - 0.08,
                    TILE_INCHES[1] - 0.08,
                    fill=False,
                    edgecolor="#0b5cad",
                    linewidth=2,
                )
            )
        drawn = io.BytesIO()
        figure.savefig(drawn, dpi=DPI, format="png")
        # 256 colours (the octree keeps the chips and ticks exact): a quarter of the bytes.
        with Image.open(drawn) as picture:
            quantized = picture.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE)
            quantized.save(out, format="PNG", optimize=True)
    except OSError as exc:
        raise EvaluationError(f"cannot write the plot {out}: {exc.strerror or exc}") from exc
    finally:
        plt.close(figure)
    return chosen


def _tile(
    board: Axes,
    path: Path,
    left: float,
    top: float,
    named: str,
    label: str,
    same: bool | None,
) -> None:
    """One photo at (left, top) inches, its named colour's chip and name, its label by eye, and
    a tick or cross (`same`: the label is the query's; None: the query itself)."""
    try:
        with Image.open(path) as image:
            photo = image.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise EvaluationError(f"cannot read the photo {path}: {exc}") from exc
    photo.thumbnail((int(_PHOTO * DPI), int(_PHOTO * DPI)))
    w, h = photo.width / DPI, photo.height / DPI  # fitted in the square box, centred
    x0 = left + (TILE_INCHES[0] - w) / 2
    y0 = top + 0.1 + (_PHOTO - h) / 2
    board.imshow(np.asarray(photo), extent=(x0, x0 + w, y0 + h, y0), interpolation="bilinear")
    line = top + 0.1 + _PHOTO + 0.2
    centre = (left + 0.2, line)
    if named == "multicolour":
        for i, colour in enumerate(_WHEEL):  # a chip of five slices
            board.add_patch(_slice(centre, i, colour))
        board.add_patch(Circle(centre, 0.07, fill=False, edgecolor="#555", linewidth=0.6))
    else:
        board.add_patch(
            Circle(centre, 0.07, facecolor=chip_colour(named), edgecolor="#555", linewidth=0.6)
        )
    board.text(left + 0.33, line, named, va="center", fontsize=8)
    who = "query, eye: " if same is None else "eye: "
    board.text(left + 0.13, line + 0.22, who + label, va="center", fontsize=7, color="#333")
    if same is not None:
        board.text(
            left + TILE_INCHES[0] - 0.15,
            line,
            _TICK if same else _CROSS,
            va="center",
            ha="right",
            fontsize=12,
            fontweight="bold",
            color="#2e7d32" if same else "#c62828",
        )


def _slice(centre: tuple[float, float], i: int, colour: str) -> Wedge:
    step = 360.0 / len(_WHEEL)
    return Wedge(centre, 0.07, i * step, (i + 1) * step, facecolor=colour, linewidth=0)
