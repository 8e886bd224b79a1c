"""The colour names, the palette of CIELAB prototypes each name is drawn from, and the soft
assignment of a pixel to the prototypes (one table lookup per pixel). numpy only.

Why CIELAB with black, grey and white as prototypes of their own, why chroma is compressed and
why these prototypes: docs/evaluation.md ("Colour"). Every number that could be tuned is in
`Knobs`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

NAMES: tuple[str, ...] = (
    "black",
    "white",
    "grey",
    "beige",
    "brown",
    "tan",
    "red",
    "pink",
    "orange",
    "yellow",
    "green",
    "blue",
    "navy",
    "purple",
    "gold",
    "silver",
    "multicolour",
)
ACHROMATIC = frozenset({"black", "white", "grey", "silver"})

# ---- the palette ------------------------------------------------------------------------------
# Prototypes as CIELAB (lightness L, chroma C, hue angle h in degrees): how each name looks on a
# photographed product, shade and lit side together (darker and duller than a screen swatch).
# Several per name, as a name covers a region (burgundy to scarlet). Label conventions: burgundy
# and coral are red, teal goes to blue or green by lean, rose gold / champagne are gold. Black,
# grey and white are colours in their own right (C = 0): a neutral pixel is always nearest an
# achromatic prototype, so it never gets a random hue. Silver has no prototype: by colour alone
# it is grey (it is a material; the feed's text can still say it, see SYNONYMS). Navy is very
# dark and dull; a dark but vivid blue (royal, cobalt) stays blue.
PALETTE_LCH: dict[str, tuple[tuple[float, float, float], ...]] = {
    "black": ((8, 0, 0), (22, 0, 0)),
    "grey": ((38, 0, 0), (52, 0, 0), (66, 0, 0)),
    "white": ((82, 0, 0), (95, 0, 0)),
    "red": ((40, 60, 35), (25, 35, 25), (50, 70, 38)),
    "pink": ((55, 60, 355), (70, 40, 0), (80, 20, 10), (45, 60, 340)),
    "orange": ((62, 75, 50), (68, 70, 60), (75, 55, 68)),
    "yellow": ((85, 75, 95), (90, 80, 108)),
    "gold": ((65, 45, 82),),
    "green": ((50, 45, 140), (65, 45, 130), (60, 30, 175), (40, 25, 115), (80, 30, 150)),
    "blue": (
        (45, 45, 275),
        (60, 35, 255),
        (75, 20, 240),
        (45, 25, 225),
        (30, 50, 290),
        (32, 28, 270),
    ),
    "navy": ((15, 15, 280), (24, 15, 275)),
    "purple": ((35, 35, 315), (55, 35, 310), (70, 25, 305), (30, 25, 340)),
    "brown": ((28, 15, 55), (42, 15, 62)),
    "tan": ((40, 30, 65), (55, 32, 68), (65, 35, 72)),
    "beige": ((80, 18, 75), (70, 20, 70)),
}


def lch_to_lab(lch: npt.ArrayLike) -> F32:
    p = np.asarray(lch, dtype=np.float32).reshape(-1, 3)
    h = np.radians(p[:, 2])
    return np.stack([p[:, 0], p[:, 1] * np.cos(h), p[:, 1] * np.sin(h)], 1).astype(np.float32)


PROTO_NAME = np.array([NAMES.index(n) for n, ps in PALETTE_LCH.items() for _ in ps])  # (P,)
PROTO_LAB = lch_to_lab([p for ps in PALETTE_LCH.values() for p in ps])  # (P, 3)
N_PROTO = len(PROTO_NAME)  # 44
DIM = N_PROTO + 2  # histogram, pattern score, product share of the frame


@dataclass(frozen=True)
class Knobs:
    """Every number that could be tuned, in one place. The defaults were chosen by
    cross-validation on halves of the 150 labelled photos or on label-free robustness
    (docs/evaluation.md); the rest are fixed by construction."""

    mask_size: int = 64  # longer side of the frame copy the background is modelled on, px
    work_size: int = 96  # longer side the product crop is described at, px
    border_samples: int = 64  # frame pixels that model the background
    bg_light_weight: float = 0.5  # lightness counts half in the background ΔE (soft shadows)
    bg_tolerance: float = 8.0  # ΔE: frame pixels this close are one background colour
    fg_low: float = 6.0  # ΔE to the nearest background colour: weight 0 below, 1 above fg_high
    fg_high: float = 16.0
    centre_sigma: float = 0.5  # centre prior exp(-r²/2σ²); r = 1 at the middle of an edge (of the
    # frame for the background model, of the product box for the product's colours)
    min_foreground: float = 0.03  # less product than this: the centre prior alone
    open_mask: bool = True  # 3x3 opening of the product weights: drops thin streaks (leg edges)
    max_gain: float = 1.3  # white-patch exposure correction gain cap (1 = off)
    chroma_gamma: float = 0.6  # chroma C -> 40 (C/40)^γ before assignment (dull colours keep hue)
    softness: float = 8.0  # σ of the soft assignment, compressed-Lab units
    exposure: float = 0.0  # stops added before assignment (measured alternative; 0 is best)
    chromatic_boost: float = 1.0  # hue shares x this against black/grey/white (1 is best)
    second_min: float = 0.15  # a second colour needs this share of the product
    pattern_size: int = 64  # longer side of the crop copy the pattern is measured on (a coarser
    # scale than work_size: steadier under JPEG / rescaling)
    pattern_edge: float = 10.0  # ΔE between neighbouring pixels that makes a pattern edge
    multicolour_min: float = 1.2  # multicolour_score above which a product is 'multicolour'
    # Colour similarity (names.similarities), chosen by 5-fold cross-validation on the 150:
    share_power: float = 2.0  # name shares squared before the cosine: the main colour leads
    multicolour_ramp: float = 0.4  # print membership rises 0 -> 1 over multicolour_min ± ramp/2


KNOBS = Knobs()

# ---- pixels -----------------------------------------------------------------------------------
_V = np.arange(256, dtype=np.float64) / 255.0
_LINEAR = np.where(_V <= 0.04045, _V / 12.92, ((_V + 0.055) / 1.055) ** 2.4).astype(np.float32)
_RGB_TO_XYZN = (  # sRGB (D65) -> XYZ / white point, so that white is (1, 1, 1)
    np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    / np.array([[0.95047], [1.0], [1.08883]])
).T.astype(np.float32)


# No BLAS call on a photo's path (here and in sq_dist): these products are tiny ((n, 3) x (3, 3)
# or x (3, m)), and OpenBLAS hands them to its thread pool, whose waking and spinning cost more
# than the arithmetic, and CPU the web server's other threads want (docs/evaluation.md, "Speed").
def srgb_to_lab(rgb: U8) -> F32:
    """(..., 3) uint8 sRGB -> (..., 3) float32 CIELAB (D65; L in [0, 100])."""
    linear = _LINEAR[rgb]  # (..., 3)
    m = _RGB_TO_XYZN
    xyz = linear[..., :1] * m[0] + linear[..., 1:2] * m[1] + linear[..., 2:] * m[2]
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    return np.stack(
        [
            116.0 * f[..., 1] - 16.0,
            500.0 * (f[..., 0] - f[..., 1]),
            200.0 * (f[..., 1] - f[..., 2]),
        ],
        -1,
    ).astype(np.float32)


def sq_dist(p: F32, q: F32, light_weight: float = 1.0) -> F32:
    """(n, 3) x (m, 3) Lab -> (n, m) squared distances, lightness scaled by light_weight: the
    differences channel by channel (exact, and no BLAS: see srgb_to_lab)."""
    d = np.zeros((len(p), len(q)), np.float32)
    for channel, weight in enumerate((light_weight, 1.0, 1.0)):
        diff = p[:, channel, None] - q[None, :, channel]  # (n, m)
        diff *= np.float32(weight)
        diff *= diff
        d += diff
    return d


# ---- palette assignment -----------------------------------------------------------------------
def _compress(lab: F32, gamma: float) -> F32:
    """Chroma C -> 40 (C/40)^gamma at constant L and hue: spreads the dull colours photos are full
    of, so a greyish blue stays blue (gamma 1 = plain Lab)."""
    c = np.maximum(np.hypot(lab[..., 1], lab[..., 2]), 1e-3)
    out = lab.copy()
    out[..., 1:] *= (40.0 * (c / 40.0) ** gamma / c)[..., None]
    return out.astype(np.float32)


def memberships(lab: F32, k: Knobs = KNOBS) -> F32:
    """(n, 3) Lab -> (n, P) soft assignment to the prototypes, rows summing to 1:
    exp(-d²/2σ²) in chroma-compressed Lab."""
    if k.exposure:
        s = np.float32(2.0 ** (k.exposure / 3.0))  # brighten in linear light: (L+16, a, b) x s
        lab = np.concatenate([np.minimum((lab[:, :1] + 16) * s - 16, 100), lab[:, 1:] * s], 1)
    d2 = sq_dist(_compress(lab, k.chroma_gamma), _compress(PROTO_LAB, k.chroma_gamma))
    e = np.exp(-(d2 - d2.min(1, keepdims=True)) / (2.0 * k.softness**2))
    return np.asarray(e / e.sum(1, keepdims=True), np.float32)


_TABLES: dict[tuple[float, float, float], F32] = {}


def membership_table(k: Knobs = KNOBS) -> F32:
    """(32768, P): memberships of every 5-bit-per-channel RGB colour (cell centres), so a
    pixel's assignment is one lookup (quantisation moves a colour by ~2 ΔE at most). Built once
    per knob set, ~30 ms."""
    key = (k.chroma_gamma, k.softness, k.exposure)
    if key not in _TABLES:
        levels = (np.arange(32) * 8 + 4).astype(np.uint8)
        cube = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
        _TABLES[key] = memberships(srgb_to_lab(cube), k)
    return _TABLES[key]
