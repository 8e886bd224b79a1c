"""Named colours and colour similarity, read off descriptors (search.colour.descriptor).

A product's colour is the share of its pixels per colour name (17 names); similarity is the
cosine of those shares, so shades within a name count as the same colour, which is what a
shopper asks for."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from search.colour.palette import ACHROMATIC, DIM, F32, KNOBS, N_PROTO, NAMES, PROTO_NAME, Knobs

__all__ = ["blend", "name_colours", "name_shares", "similarities"]

_CHROMATIC = np.array([n not in ACHROMATIC for n in NAMES])


def name_shares(descriptors: F32) -> F32:
    """(DIM,) or (n, DIM) -> (17,) or (n, 17): share of the product per colour name
    (the multicolour column is 0: it is decided by multicolour_score)."""
    d = np.asarray(descriptors, np.float32)
    one_hot = np.eye(len(NAMES), dtype=np.float32)[PROTO_NAME]  # (P, 17)
    return np.asarray(d[..., :N_PROTO] @ one_hot, np.float32)


def multicolour_score(descriptor: F32) -> float:
    """Pattern score x entropy (nats) of the name shares: a print is finely mixed AND made of
    several colours; a two-tone shoe has entropy without pattern, a textured plain shoe the
    reverse."""
    s = name_shares(descriptor).astype(np.float64)
    return float(descriptor[N_PROTO]) * float(-(s * np.log(np.maximum(s, 1e-9))).sum())


def name_colours(descriptor: F32, k: Knobs = KNOBS) -> tuple[str, str | None]:
    """(main, second or None). A print is 'multicolour' with its largest colour second, as the
    labels have it; otherwise the largest name, and the next one if it has second_min."""
    shares = name_shares(descriptor)
    ranked = np.argsort(-np.where(_CHROMATIC, shares * k.chromatic_boost, shares), kind="stable")
    first, runner = NAMES[ranked[0]], NAMES[ranked[1]]
    if multicolour_score(descriptor) > k.multicolour_min:
        return "multicolour", first
    return first, (runner if shares[ranked[1]] >= k.second_min else None)


# ---- similarity and blending ------------------------------------------------------------------
def similarities(query: F32, matrix: F32) -> F32:
    """(DIM,) query x (n, DIM) catalogue -> (n,) colour similarity in [0, 1]: the cosine of the
    name-share vectors. Shades within a name count as the same colour (what a shopper asks
    for); prototype-level alternatives measured worse (docs/evaluation.md)."""
    q = name_shares(query)
    x = name_shares(np.asarray(matrix, np.float32).reshape(-1, DIM))
    num = x @ q
    den = np.linalg.norm(x, axis=1) * max(float(np.linalg.norm(q)), 1e-9)
    return np.asarray(np.clip(num / np.maximum(den, 1e-9), 0.0, 1.0), np.float32)


def blend(vgg_similarity: npt.ArrayLike, colour_similarity: npt.ArrayLike, weight: float) -> F32:
    """(n,) VGG cosine (to the expanded query) and (n,) colour similarity -> (n,) ranking score
    (1 - w) vgg + w colour, used inside the inferred category; w = 0 is today's ranking. Shown
    to customers as 100 * clip(score, 0, 1): the number shown is the one ranked by."""
    v = np.asarray(vgg_similarity, np.float32)
    c = np.asarray(colour_similarity, np.float32)
    return np.asarray((1.0 - weight) * v + weight * c, np.float32)
