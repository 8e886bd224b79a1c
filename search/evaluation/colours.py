"""Colour in the evaluation (`lookalike evaluate --colours FILE --images DIR`): each method's
leave-one-out ranking, then the live search's colour step on it (`search.ranking.blend_colour`
over the nearest `COLOUR_CANDIDATES` of the inferred category, each photo's descriptor from
`search.colour`), scored against colour labels by eye (`file,colour,...`, docs/evaluation.md).

A result counts for colour P@k when its main colour label is the query's, for category+colour
P@k when both its category and its colour are; means over every query (k results each).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from search.colour import DIM, NAMES, describe_image
from search.errors import EvaluationError
from search.evaluation.inputs import csv_rows
from search.evaluation.methods import (
    EvaluationOptions,
    FloatArray,
    IntArray,
    Method,
    ranked_distances,
)
from search.index import Hit
from search.ranking import CATEGORY_MAJORITY, COLOUR_CANDIDATES, blend_colour

__all__ = [
    "ColourScores",
    "colour_neighbours",
    "describe_files",
    "read_colour_labels",
    "score_colours",
]


@dataclass(frozen=True)
class ColourScores:
    """One method at one colour weight, on the colour-labelled photos."""

    name: str
    weight: float
    category: float  # P@k, result's category = query's
    colour: float  # P@k, result's main colour = query's
    category_colour: float  # P@k, both

    def to_dict(self) -> dict[str, float | str]:
        return {
            "method": self.name,
            "colour_weight": self.weight,
            "category_precision": self.category,
            "colour_precision": self.colour,
            "category_colour_precision": self.category_colour,
        }


def read_colour_labels(path: Path) -> dict[str, str]:
    """A CSV with a header and the columns file,colour (others ignored) -> {file: colour}, each
    colour one of the 17 names of search.colour.NAMES."""
    labels: dict[str, str] = {}
    for line, row in csv_rows(path, ("file", "colour")):
        name, colour = row["file"], row["colour"].lower()
        if colour not in NAMES:
            raise EvaluationError(
                f"{path}, line {line}: colour {colour!r} is not one of {', '.join(NAMES)}"
            )
        labels[name] = colour
    if not labels:
        raise EvaluationError(f"{path}: no colour labels")
    return labels


def describe_files(folder: Path, names: Sequence[str]) -> npt.NDArray[np.float32]:
    """The colour descriptor of each folder/name, as the live import computes it: (n, DIM)."""
    out = np.empty((len(names), DIM), dtype=np.float32)
    for i, name in enumerate(names):
        try:
            with Image.open(folder / name) as image:
                out[i] = describe_image(image.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise EvaluationError(f"cannot read the photo {folder / name}: {exc}") from exc
    return out


def _candidates(distances: FloatArray, codes: IntArray | None, k: int) -> IntArray:
    """One query's (n,) distances after the method's steps -> the indices the colour step
    reorders, nearest first: the COLOUR_CANDIDATES nearest, within the inferred category when
    the cat step inferred one (as the live search's category filter), the query excluded."""
    order = np.argsort(distances, kind="stable")
    order = order[np.isfinite(distances[order])]
    if codes is not None:
        category, count = Counter(codes[order[:k]].tolist()).most_common(1)[0]
        if count > CATEGORY_MAJORITY * k:
            order = order[codes[order] == category]
    return order[: max(COLOUR_CANDIDATES, k)]


def colour_neighbours(
    vectors: npt.ArrayLike,
    descriptors: npt.NDArray[np.float32],
    method: Method,
    options: EvaluationOptions,
    labels: Sequence[str],
    weight: float,
) -> IntArray:
    """(n, d) vectors, (n, DIM) descriptors, n category labels -> (n, k) neighbours: the
    method's ranking (centre fitted on the catalogue, as the live search), then the colour
    blend at `weight`. A category smaller than k + 1 is completed by the nearest others."""
    if method.rerank == "krr":
        raise EvaluationError("the colour step follows qe or no re-ranking, not krr")
    if options.metric != "cosine":
        raise EvaluationError("the colour blend mixes cosine similarities: use --metric cosine")
    x = np.asarray(vectors, dtype=np.float64)
    n = x.shape[0]
    options.check(n)
    categories = sorted(set(labels))
    codes = np.array([categories.index(c) for c in labels], dtype=np.intp)
    z = options.fit_processor(method, x).transform(x).astype(np.float64)
    out = np.empty((n, options.k), dtype=np.intp)
    for i in range(n):
        distances = ranked_distances(z, np.array([i], dtype=np.intp), method, options, codes)[0]
        order = _candidates(distances, codes if method.category else None, options.k)
        hits = [
            Hit(
                product_id=int(j),
                image_id=int(j),
                distance=float(distances[j]),
                similarity=100.0 * float(np.clip(1.0 - distances[j], 0.0, 1.0)),
            )
            for j in order
        ]
        stored = {int(j): descriptors[j] for j in order}
        ranked = [hit.image_id for hit in blend_colour(hits, descriptors[i], stored, weight)]
        if len(ranked) < options.k:
            rest = np.argsort(distances, kind="stable")
            ranked += [int(j) for j in rest if int(j) not in stored and int(j) != i]
        out[i] = ranked[: options.k]
    return out


def score_colours(
    neighbours: IntArray,
    categories: Sequence[str],
    colours: Sequence[str],
    *,
    name: str,
    weight: float,
) -> ColourScores:
    """(n, k) neighbours scored against n categories and n main colours."""
    category = np.array(categories)
    colour = np.array(colours)
    same_category = category[neighbours] == category[:, None]  # (n, k)
    same_colour = colour[neighbours] == colour[:, None]
    return ColourScores(
        name=name,
        weight=weight,
        category=float(same_category.mean()),
        colour=float(same_colour.mean()),
        category_colour=float((same_category & same_colour).mean()),
    )
