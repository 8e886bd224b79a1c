"""Vector post-processing fitted on the catalogue, and the distances a search can rank by.

numpy only (imported by code that has to start fast). A `PostProcessor` is the fitted state of
a few classic steps applied to VGG16 avg-pool vectors before they are compared:

    x -> sign(x) |x|^power      power normalisation (0.5 = square root; 1.0 = unchanged)
      -> x / |x|                L2-normalise (when `normalize`)
      -> x - mean               centring on the catalogue mean (when fitted with centre=True)
      -> x @ projection         PCA whitening with shrinkage (when fitted with whiten=True)

The catalogue vectors and every query go through the same `transform`; the index then
L2-normalises the result as it always does for cosine. The identity processor (the default)
changes nothing. `to_json()` / `from_json()` round-trip exactly (arrays are stored as base64
float32 bytes), so the live index can store the processor next to its vectors and every process
applies the same one.

`expand_query` is average query expansion; the distances themselves are defined once, in
`search.index.distance`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from search.index import Metric, l2_normalise

__all__ = ["PostProcessor", "expand_query"]


FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]

_FORMAT: Final = "lookalike.postprocess"
_VERSION: Final = 1


def expand_query(
    query: npt.ArrayLike, neighbours: npt.ArrayLike, *, metric: Metric = "cosine"
) -> FloatArray:
    """Average query expansion: the mean of the query and its top neighbours ((m, d) rows).

    For cosine the vectors are L2-normalised first, so each counts equally; for the other
    metrics they are averaged as they are. Search again with the result (same metric).
    """
    q = np.asarray(query, dtype=np.float64).reshape(1, -1)  # (1, d)
    nb = np.asarray(neighbours, dtype=np.float64).reshape(-1, q.shape[1])  # (m, d)
    stack = np.concatenate([q, nb])  # (m + 1, d)
    if metric == "cosine":
        stack = l2_normalise(stack)
    return np.asarray(stack.mean(axis=0), dtype=np.float64)


def _encode(array: Float32Array | None) -> dict[str, Any] | None:
    if array is None:
        return None
    data = np.ascontiguousarray(array, dtype="<f4")
    return {
        "dtype": "<f4",
        "shape": list(data.shape),
        "data": base64.b64encode(data.tobytes()).decode("ascii"),
    }


def _decode(value: Any, what: str) -> Float32Array | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("dtype") != "<f4":
        raise ValueError(f"post-processor {what}: expected a base64 <f4 array")
    shape = tuple(int(s) for s in value["shape"])
    raw = base64.b64decode(value["data"].encode("ascii"), validate=True)
    array = np.frombuffer(raw, dtype="<f4")
    if array.size != int(np.prod(shape)):
        raise ValueError(f"post-processor {what}: {array.size} values for shape {shape}")
    return array.reshape(shape).astype(np.float32)


@dataclass(frozen=True, eq=False)
class PostProcessor:
    """Fitted vector post-processing; the default instance is the identity.

    `mean` is (d,) and `projection` (d, d_out), both float32, so a serialised copy transforms
    bit for bit like the original. `dim` is the input dimension (None: any, identity only).
    """

    power: float = 1.0
    normalize: bool = False
    mean: Float32Array | None = field(default=None, repr=False)
    projection: Float32Array | None = field(default=None, repr=False)
    dim: int | None = None
    fitted_on: int = 0  # number of vectors the mean / projection were fitted on

    def __post_init__(self) -> None:
        if not np.isfinite(self.power) or self.power <= 0:
            raise ValueError(f"power must be a positive number, got {self.power!r}")
        for name in ("mean", "projection"):
            array = getattr(self, name)
            if array is not None:
                if self.dim is None or array.shape[0] != self.dim:
                    raise ValueError(f"{name} of shape {array.shape} does not match dim {self.dim}")
                if not np.isfinite(array).all():
                    raise ValueError(f"{name} contains NaN or infinity")
        if self.mean is not None and self.mean.ndim != 1:
            raise ValueError(f"mean must be (dim,), got {self.mean.shape}")
        if self.projection is not None and self.projection.ndim != 2:
            raise ValueError(f"projection must be (dim, out), got {self.projection.shape}")

    # ---------------------------------------------------------------- fitting

    @classmethod
    def fit(
        cls,
        vectors: npt.ArrayLike,
        *,
        power: float = 1.0,
        normalize: bool | None = None,
        centre: bool = False,
        whiten: bool = False,
        whiten_dim: int | None = None,
        shrinkage: float = 1.0,
    ) -> PostProcessor:
        """Fit on (n, d) catalogue vectors.

        normalize defaults to True whenever any step is asked for (power != 1, centre or whiten):
        every step is meant for unit vectors. whiten implies centring; it keeps the
        `whiten_dim` strongest principal directions (all by default) and divides each by
        sqrt(eigenvalue + shrinkage * mean eigenvalue): shrinkage 0 is plain PCA whitening,
        large values approach plain centring (rotated).
        """
        x = np.asarray(vectors, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"expected (n, d) vectors with n >= 1, got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("vectors contain NaN or infinity")
        if shrinkage < 0:
            raise ValueError(f"shrinkage must be >= 0, got {shrinkage}")
        if normalize is None:
            normalize = power != 1.0 or centre or whiten
        stage = cls(power=power, normalize=normalize, dim=x.shape[1])
        if not (centre or whiten):
            return dataclasses.replace(stage, fitted_on=x.shape[0])
        z = stage.transform(x).astype(np.float64)  # (n, d) after power and normalisation
        mean = z.mean(axis=0)  # (d,)
        projection: FloatArray | None = None
        if whiten:
            centred = z - mean
            cov = centred.T @ centred / x.shape[0]  # (d, d), biased estimate
            eigenvalues, eigenvectors = np.linalg.eigh(cov)  # ascending
            order = np.argsort(eigenvalues)[::-1]
            eigenvalues = np.maximum(eigenvalues[order], 0.0)
            eigenvectors = eigenvectors[:, order]
            keep = x.shape[1] if whiten_dim is None else max(1, min(whiten_dim, x.shape[1]))
            regularised = eigenvalues[:keep] + shrinkage * float(eigenvalues.mean())
            if not (regularised > 0).all():
                raise ValueError("whitening with shrinkage 0 needs non-zero variance everywhere")
            projection = eigenvectors[:, :keep] / np.sqrt(regularised)[None, :]  # (d, keep)
        return cls(
            power=power,
            normalize=normalize,
            mean=mean.astype(np.float32),
            projection=None if projection is None else projection.astype(np.float32),
            dim=x.shape[1],
            fitted_on=x.shape[0],
        )

    # ---------------------------------------------------------------- applying

    @property
    def is_identity(self) -> bool:
        return (
            self.power == 1.0
            and not self.normalize
            and self.mean is None
            and self.projection is None
        )

    @property
    def output_dim(self) -> int | None:
        """Dimension of transformed vectors (None: same as the input's, for the identity)."""
        if self.projection is not None:
            return int(self.projection.shape[1])
        return self.dim

    def transform(self, vectors: npt.ArrayLike) -> Float32Array:
        """(n, d) or (d,) vectors -> float32 of the same rank, with the fitted steps applied.

        Computed in float64 and returned as float32 (the index's dtype).
        """
        x = np.asarray(vectors, dtype=np.float64)
        single = x.ndim == 1
        if single:
            x = x[None, :]
        if x.ndim != 2 or (self.dim is not None and x.shape[1] != self.dim):
            raise ValueError(f"expected (n, {self.dim}) vectors, got {np.shape(vectors)}")
        if self.power != 1.0:
            x = np.sign(x) * np.abs(x) ** self.power
        if self.normalize:
            x = l2_normalise(x)
        if self.mean is not None:
            x = x - self.mean.astype(np.float64)
        if self.projection is not None:
            x = x @ self.projection.astype(np.float64)
        out = x.astype(np.float32)
        return out[0] if single else out

    # ---------------------------------------------------------------- storing

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "power": self.power,
            "normalize": self.normalize,
            "dim": self.dim,
            "fitted_on": self.fitted_on,
            "mean": _encode(self.mean),
            "projection": _encode(self.projection),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def to_bytes(self) -> bytes:
        return self.to_json().encode("utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PostProcessor:
        if data.get("format") != _FORMAT or data.get("version") != _VERSION:
            raise ValueError(
                f"not a version-{_VERSION} Lookalike post-processor: "
                f"{data.get('format')!r} v{data.get('version')!r}"
            )
        dim = data.get("dim")
        return cls(
            power=float(data["power"]),
            normalize=bool(data["normalize"]),
            mean=_decode(data.get("mean"), "mean"),
            projection=_decode(data.get("projection"), "projection"),
            dim=None if dim is None else int(dim),
            fitted_on=int(data.get("fitted_on", 0)),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> PostProcessor:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a post-processor is a JSON object")
        return cls.from_dict(data)

    @classmethod
    def from_bytes(cls, data: bytes) -> PostProcessor:
        return cls.from_json(data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PostProcessor):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.to_json())
