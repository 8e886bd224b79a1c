"""Named colours and colour similarity, read off descriptors (search.colour.descriptor).

A product's colour is the share of its pixels per colour name (17 names); similarity is the
cosine of those shares (sharpened, with how surely the product is a print as one more
colour), so shades within a name count as the same colour, which is what a shopper asks for."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from search.colour.palette import ACHROMATIC, DIM, F32, KNOBS, N_PROTO, NAMES, PROTO_NAME, Knobs

__all__ = [
    "blend",
    "multicolour_scores",
    "name_colours",
    "name_shares",
    "similarities",
    "similarity_features",
]

_CHROMATIC = np.array([n not in ACHROMATIC for n in NAMES])
_MULTICOLOUR = NAMES.index("multicolour")


def name_shares(descriptors: F32) -> F32:
    """(DIM,) or (n, DIM) -> (17,) or (n, 17): share of the product per colour name
    (the multicolour column is 0: it is decided by multicolour_score)."""
    d = np.asarray(descriptors, np.float32)
    one_hot = np.eye(len(NAMES), dtype=np.float32)[PROTO_NAME]  # (P, 17)
    return np.asarray(d[..., :N_PROTO] @ one_hot, np.float32)


def multicolour_scores(descriptors: F32) -> npt.NDArray[np.float64]:
    """(n, DIM) -> (n,): pattern score x entropy (nats) of the name shares: a print is finely
    mixed AND made of several colours; a two-tone shoe has entropy without pattern, a textured
    plain shoe the reverse."""
    d = np.asarray(descriptors, np.float32).reshape(-1, DIM)
    s = name_shares(d).astype(np.float64)
    entropy = -(s * np.log(np.maximum(s, 1e-9))).sum(1)
    return np.asarray(d[:, N_PROTO].astype(np.float64) * entropy, np.float64)


def multicolour_score(descriptor: F32) -> float:
    """(DIM,) -> multicolour_scores of that one descriptor."""
    return float(multicolour_scores(descriptor)[0])


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
def similarity_features(descriptors: F32, k: Knobs = KNOBS) -> F32:
    """(n, DIM) -> (n, 17) unit vectors whose dot product is the colour similarity: the name
    shares raised to share_power (so the main colour leads and a small trim counts little),
    scaled by sqrt(1 - m²), and m in the multicolour column, m = how surely the product is a
    print (0 -> 1 over multicolour_min ± multicolour_ramp / 2, the naming threshold). So two
    sure prints are alike whatever their colours (the labels call every print multicolour), a
    sure print is unlike any plain shoe, a borderline one partly like both, and two plain
    shoes are compared by their colours."""
    d = np.asarray(descriptors, np.float32).reshape(-1, DIM)
    shares = name_shares(d).astype(np.float64) ** k.share_power  # (n, 17), multicolour col 0
    shares /= np.maximum(np.linalg.norm(shares, axis=1, keepdims=True), 1e-9)
    low = k.multicolour_min - k.multicolour_ramp / 2.0
    m = np.clip((multicolour_scores(d) - low) / k.multicolour_ramp, 0.0, 1.0)  # (n,)
    features = shares * np.sqrt(1.0 - m * m)[:, None]
    features[:, _MULTICOLOUR] = m
    return np.asarray(features, np.float32)


def similarities(query: F32, matrix: F32, k: Knobs = KNOBS) -> F32:
    """(DIM,) query x (n, DIM) catalogue -> (n,) colour similarity in [0, 1]: the cosine of
    their similarity_features. Shades within a name count as the same colour (what a shopper
    asks for); prototype-level alternatives measured worse (docs/evaluation.md)."""
    q = similarity_features(query, k)[0]
    x = similarity_features(matrix, k)
    return np.asarray(np.clip(x @ q, 0.0, 1.0), np.float32)


def blend(vgg_similarity: npt.ArrayLike, colour_similarity: npt.ArrayLike, weight: float) -> F32:
    """(n,) VGG cosine (to the expanded query) and (n,) colour similarity -> (n,) ranking score
    (1 - w) vgg + w colour, used inside the inferred category; w = 0 is today's ranking. Shown
    to customers as 100 * clip(score, 0, 1): the number shown is the one ranked by."""
    v = np.asarray(vgg_similarity, np.float32)
    c = np.asarray(colour_similarity, np.float32)
    return np.asarray((1.0 - weight) * v + weight * c, np.float32)
