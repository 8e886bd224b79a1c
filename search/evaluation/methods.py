"""The methods `lookalike evaluate` compares, and leave-one-out ranking under each.

Methods are named by "+"-joined steps: plain, sqrt (power 0.5), centre (subtract the mean),
whiten (PCA whitening with shrinkage), then optionally one re-ranking: qe (average query
expansion) or krr (k-reciprocal re-ranking, Zhong et al. 2017), and last optionally cat:
category inference as the live search does it (when more than half of the top k share a
catalogue category, the results are restricted to it; the catalogue's categories are the
labels, as a shop's product categories would be). The fitted steps (centre, whiten) are
fitted on the whole catalogue by default, query included, as the live system would fit them
on its known catalogue; `fit="loo"` refits them without each query instead.

`live_method` names the chain the live search runs with given settings (by default
sqrt+centre+qe+cat): what `lookalike evaluate` scores when no method is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from search.errors import EvaluationError
from search.index import METRICS, Metric, l2_normalise, pairwise_distances
from search.postprocess import PostProcessor

__all__ = [
    "ALL_METHODS",
    "EvaluationError",
    "EvaluationOptions",
    "Fit",
    "FloatArray",
    "IntArray",
    "Method",
    "k_reciprocal_distances",
    "leave_one_out_neighbours",
    "live_method",
    "parse_methods",
]

Fit = Literal["catalogue", "loo"]
Rerank = Literal["none", "qe", "krr"]
IntArray = npt.NDArray[np.intp]
FloatArray = npt.NDArray[np.float64]

# What `--postprocess all` compares, plain first.
ALL_METHODS: Final[tuple[str, ...]] = (
    "plain",
    "sqrt",
    "centre",
    "sqrt+centre",
    "whiten",
    "sqrt+whiten",
    "qe",
    "krr",
    "sqrt+centre+qe",
    "sqrt+centre+krr",
    "sqrt+centre+cat",
    "sqrt+centre+qe+cat",
)
_STEP_ALIASES: Final = {"center": "centre", "power": "sqrt", "rerank": "krr", "kreciprocal": "krr"}
_ROW_CHUNK: Final = 1024  # query rows ranked at a time: bounds the (rows, n) distance matrix


# ---- methods and options -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Method:
    """Post-processing steps (fitted on the catalogue) and an optional re-ranking."""

    name: str
    power: float = 1.0
    centre: bool = False
    whiten: bool = False
    rerank: Rerank = "none"
    category: bool = False  # restrict to the majority category of the top k (live: INFER_CATEGORY)

    @property
    def fits(self) -> bool:
        """True when the method has state learnt from the catalogue (mean, projection)."""
        return self.centre or self.whiten

    @classmethod
    def parse(cls, name: str) -> Method:
        steps = [_STEP_ALIASES.get(s, s) for s in name.strip().lower().split("+") if s]
        if not steps:
            raise EvaluationError("empty method name")
        power, centre, whiten, category = 1.0, False, False, False
        rerank: Rerank = "none"
        for step in steps:
            if step == "plain" and len(steps) == 1:
                pass
            elif step == "sqrt" and power == 1.0:
                power = 0.5
            elif step == "centre" and not centre:
                centre = True
            elif step == "whiten" and not whiten:
                whiten = True
            elif step == "qe" and rerank == "none":
                rerank = "qe"
            elif step == "krr" and rerank == "none":
                rerank = "krr"
            elif step == "cat" and not category:
                category = True
            else:
                raise EvaluationError(
                    f"bad method {name!r}: steps are plain, or sqrt, centre, whiten, at most "
                    "one of qe, krr, and cat, joined with '+', each once"
                )
        canonical = "+".join(
            s
            for s, on in (
                ("sqrt", power != 1.0),
                ("centre", centre),
                ("whiten", whiten),
                (rerank, rerank != "none"),
                ("cat", category),
            )
            if on
        )
        return cls(
            name=canonical or "plain",
            power=power,
            centre=centre,
            whiten=whiten,
            rerank=rerank,
            category=category,
        )


def parse_methods(spec: str) -> list[Method]:
    """'all', 'none' (plain only) or a comma-separated list; plain is always first."""
    text = spec.strip().lower()
    names: Sequence[str]
    if text == "all":
        names = ALL_METHODS
    elif text in ("", "none", "plain"):
        names = ("plain",)
    else:
        names = ["plain", *text.split(",")]
    methods: list[Method] = []
    for name in names:
        method = Method.parse(name)
        if all(m.name != method.name for m in methods):
            methods.append(method)
    return methods


def live_method(
    *, postprocess: str, query_expansion: int, infer_category: bool, has_categories: bool = True
) -> Method:
    """The method the live search runs with these settings (POSTPROCESS, QUERY_EXPANSION,
    INFER_CATEGORY; by default sqrt+centre+qe+cat, its qe averaging QUERY_EXPANSION
    neighbours). Without categories to infer (`has_categories=False`) the cat step cannot run
    and is left out, as the live search then never restricts."""
    steps = ["sqrt", "centre"] if postprocess == "sqrt-centre" else []
    if query_expansion > 0:
        steps.append("qe")
    if infer_category and has_categories:
        steps.append("cat")
    return Method.parse("+".join(steps) or "plain")


@dataclass(frozen=True, slots=True)
class EvaluationOptions:
    k: int = 8
    metric: Metric = "cosine"
    fit: Fit = "catalogue"
    qe_neighbours: int = 3  # neighbours averaged into the query by qe
    krr_k1: int = 20  # k-reciprocal neighbourhood size (Zhong et al. defaults: 20, 6, 0.3)
    krr_k2: int = 6  # neighbours averaged in the local query expansion of krr
    krr_lambda: float = 0.3  # weight of the original distance in the final krr distance
    whiten_dim: int | None = None  # principal directions kept by whiten (None: all)
    shrinkage: float = 1.0  # whiten divides by sqrt(eigenvalue + shrinkage * mean eigenvalue)

    def check(self, n: int) -> None:
        if self.metric not in METRICS:
            raise EvaluationError(f"unknown metric {self.metric!r}: use {', '.join(METRICS)}")
        if not 1 <= self.k <= n - 1:
            raise EvaluationError(f"k must be between 1 and {n - 1} (vectors - 1), got {self.k}")
        if self.fit not in ("catalogue", "loo"):
            raise EvaluationError(f"fit must be catalogue or loo, got {self.fit!r}")
        if self.qe_neighbours < 1 or self.krr_k1 < 1 or self.krr_k2 < 1:
            raise EvaluationError("qe and k-reciprocal neighbour counts must be >= 1")
        if not 0.0 <= self.krr_lambda <= 1.0:
            raise EvaluationError(f"krr lambda must be in [0, 1], got {self.krr_lambda}")
        if self.shrinkage < 0:
            raise EvaluationError(f"shrinkage must be >= 0, got {self.shrinkage}")

    def fit_processor(self, method: Method, vectors: npt.ArrayLike) -> PostProcessor:
        return PostProcessor.fit(
            vectors,
            power=method.power,
            centre=method.centre,
            whiten=method.whiten,
            whiten_dim=self.whiten_dim,
            shrinkage=self.shrinkage,
        )


# ---- ranking -------------------------------------------------------------------------------


def _top(distances: FloatArray, k: int) -> IntArray:
    """Column indices of the k smallest per row; ties go to the lower index (stable sort)."""
    return np.argsort(distances, axis=1, kind="stable")[:, :k].astype(np.intp)


def _exclude_self(distances: FloatArray, rows: IntArray) -> None:
    distances[np.arange(rows.size), rows] = np.inf


def k_reciprocal_distances(
    vectors: npt.ArrayLike,
    *,
    metric: Metric = "cosine",
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> FloatArray:
    """(n, d) -> (n, n) k-reciprocal re-ranked distances among all n vectors.

    Zhong et al., "Re-ranking person re-identification with k-reciprocal encoding" (CVPR
    2017), with the query inside the set, as in the paper: each row's original distances are
    scaled to [0, 1]; every vector's k1-reciprocal neighbours (expanded by those of its
    k1/2-reciprocal neighbours that overlap by more than 2/3) get Gaussian-like weights; these
    are averaged over the k2 nearest neighbours; the Jaccard distance of the weight vectors is
    mixed with the original distance: (1 - lambda) * jaccard + lambda * original.
    For leave-one-out this is exact: the query plus the other n - 1 vectors is precisely the
    set a live search of that query against the rest would build. O(n^3): for evaluation only.
    """
    x = np.asarray(vectors, dtype=np.float64)
    n = x.shape[0]
    original = pairwise_distances(x, x, metric)  # (n, n)
    low = original.min(axis=1, keepdims=True)
    span = original.max(axis=1, keepdims=True) - low
    span[span == 0.0] = 1.0
    original = (original - low) / span  # each row in [0, 1]
    rank = np.argsort(original, axis=1, kind="stable")  # (n, n)

    def reciprocal(k: int) -> npt.NDArray[np.bool_]:
        forward = np.zeros((n, n), dtype=bool)  # forward[i, j]: j among i's k+1 nearest
        forward[np.arange(n)[:, None], rank[:, : min(k + 1, n)]] = True
        return forward & forward.T  # i and j each among the other's nearest

    near = reciprocal(k1)  # (n, n) bool, the k1-reciprocal sets R(i)
    half = reciprocal(round(k1 / 2))  # (n, n) bool, the k1/2-reciprocal sets R(c)
    # overlap[c, i] = |R_half(c) & R(i)|; c expands R(i) when it is in R(i) and overlaps > 2/3.
    overlap = half.astype(np.float64) @ near.T.astype(np.float64)  # (n, n)
    needed = (2.0 / 3.0) * half.sum(axis=1)  # (n,) overlap candidate c must exceed
    grows = near & (needed[None, :] < overlap.T)  # (n, n) [i, c]
    expanded = near | ((grows.astype(np.float64) @ half.astype(np.float64)) > 0)  # (n, n)
    np.fill_diagonal(expanded, True)  # i belongs to its own set even when i is not its nearest
    weights = np.where(expanded, np.exp(-original), 0.0)
    weights /= weights.sum(axis=1, keepdims=True)  # rows sum to 1 (each holds at least i)
    if k2 > 1:
        weights = weights[rank[:, : min(k2, n)]].mean(axis=1)  # (n, n) local query expansion
    jaccard = np.empty((n, n), dtype=np.float64)
    for i in range(n):
        shared = np.minimum(weights[i][None, :], weights).sum(axis=1)  # (n,)
        jaccard[i] = 1.0 - shared / (2.0 - shared)
    return np.asarray((1.0 - lambda_value) * jaccard + lambda_value * original, dtype=np.float64)


def _restrict_to_majority(distances: FloatArray, codes: IntArray, k: int) -> None:
    """In place, per row of (c, n) distances: when more than half of the row's top k share a
    category, every item of another category moves behind all of that category's items
    (order kept), as the live search's category filter does."""
    top = _top(distances, k)  # (c, k)
    for row in range(distances.shape[0]):
        counts = np.bincount(codes[top[row]], minlength=int(codes.max()) + 1)
        majority = int(np.argmax(counts))
        if counts[majority] * 2 > k:
            finite = distances[row][np.isfinite(distances[row])]
            shift = float(np.abs(finite).max()) * 2.0 + 1.0 if finite.size else 1.0
            distances[row, codes != majority] += shift


def _ranked(
    z: FloatArray,
    rows: IntArray,
    method: Method,
    options: EvaluationOptions,
    codes: IntArray | None = None,
) -> IntArray:
    """Top-k neighbours of z[rows] among all rows of z but themselves: (len(rows), k).
    `codes` ((n,) category codes) are needed by the cat step."""
    if method.category and codes is None:
        raise EvaluationError("category inference needs the labels")
    if method.rerank == "krr":
        distances = k_reciprocal_distances(
            z,
            metric=options.metric,
            k1=options.krr_k1,
            k2=options.krr_k2,
            lambda_value=options.krr_lambda,
        )[rows]
        _exclude_self(distances, rows)
        if method.category and codes is not None:
            _restrict_to_majority(distances, codes, options.k)
        return _top(distances, options.k)
    out = np.empty((rows.size, options.k), dtype=np.intp)
    for start in range(0, rows.size, _ROW_CHUNK):
        chunk = rows[start : start + _ROW_CHUNK]
        distances = ranked_distances(z, chunk, method, options, codes)
        out[start : start + chunk.size] = _top(distances, options.k)
    return out


def ranked_distances(
    z: FloatArray,
    chunk: IntArray,
    method: Method,
    options: EvaluationOptions,
    codes: IntArray | None = None,
) -> FloatArray:
    """(c, n) distances of z[chunk] to every row of z after the method's qe and cat steps, the
    query itself at infinity (not krr). The cat step moves the other categories behind: their
    distances exceed every distance of the inferred category."""
    distances = pairwise_distances(z[chunk], z, options.metric)  # (c, n)
    _exclude_self(distances, chunk)
    if method.rerank == "qe":
        first = _top(distances, options.qe_neighbours)  # (c, m)
        stack = np.concatenate([z[chunk][:, None, :], z[first]], axis=1)  # (c, m + 1, d)
        if options.metric == "cosine":
            stack = l2_normalise(stack)
        distances = pairwise_distances(stack.mean(axis=1), z, options.metric)
        _exclude_self(distances, chunk)
    if method.category and codes is not None:
        _restrict_to_majority(distances, codes, options.k)
    return distances


def leave_one_out_neighbours(
    vectors: npt.ArrayLike,
    method: Method,
    options: EvaluationOptions,
    labels: Sequence[str] | None = None,
) -> IntArray:
    """(n, d) -> (n, k): each vector's k nearest others after the method's steps (the cat
    step needs the n labels)."""
    x = np.asarray(vectors, dtype=np.float64)
    n = x.shape[0]
    options.check(n)
    every = np.arange(n, dtype=np.intp)
    codes: IntArray | None = None
    if labels is not None:
        categories = sorted(set(labels))
        codes = np.array([categories.index(c) for c in labels], dtype=np.intp)
    if options.fit == "catalogue" or not method.fits:
        z = options.fit_processor(method, x).transform(x).astype(np.float64)
        return _ranked(z, every, method, options, codes)
    out = np.empty((n, options.k), dtype=np.intp)
    for i in range(n):  # honest: the mean / whitening never sees the query
        processor = options.fit_processor(method, np.delete(x, i, axis=0))
        z = processor.transform(x).astype(np.float64)
        out[i] = _ranked(z, every[i : i + 1], method, options, codes)[0]
    return out
