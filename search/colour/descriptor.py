"""A product photo -> its colour descriptor (DIM float32): the product separated from its
background, its pixels soft-assigned to the palette (search.colour.palette). numpy + Pillow.

One image, one core, about 2-3 ms on a photo of a few hundred pixels:
    rgb (H, W, 3) uint8
      -> white-patch exposure correction                                  (a gain in [1, 1.3])
      -> 64 px copy of the frame: background colours, coarse product weights      (h, w)
      -> product box cut from the full image, resized to 96 px (longer side)     (h', w', 3)
      -> CIELAB, product weights (centre prior across the box), soft assignment of each pixel
         to the palette, pattern score
      -> describe(): [prototype histogram (N_PROTO), pattern, product share]      (DIM,) float32
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt
from PIL import Image

from search.colour.palette import (
    DIM,
    F32,
    KNOBS,
    N_PROTO,
    U8,
    Knobs,
    membership_table,
    sq_dist,
    srgb_to_lab,
)

__all__ = ["describe", "foreground_mask"]


def resize(rgb: U8, size: int, enlarge: bool = False) -> U8:
    """(H, W, 3) uint8 -> longer side `size` (box filter when shrinking: an average, no
    ringing; bilinear when enlarging, only if asked)."""
    image = Image.fromarray(np.ascontiguousarray(rgb[..., :3], dtype=np.uint8))
    scale = size / max(image.size)
    if scale < 1.0 or (enlarge and scale > 1.0):
        target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        method = Image.Resampling.BOX if scale < 1.0 else Image.Resampling.BILINEAR
        image = image.resize(target, method)
    return np.asarray(image)


def white_patch_gain(rgb: U8, max_gain: float) -> float:
    """'White patch' exposure correction: the gain bringing the frame's brightest pixels (99th
    percentile of max(R, G, B)) to 255, within [1, max_gain]: undoes an under-exposed photo,
    leaves a shot on white alone, never invents light for a dark scene."""
    top = rgb.max(-1).reshape(-1)
    i = int(0.99 * (top.size - 1))
    bright = float(np.partition(top, i)[i])
    return float(np.clip(255.0 / max(bright, 1.0), 1.0, max(max_gain, 1.0)))


def _gain(rgb: U8, gain: float) -> U8:
    return rgb if gain == 1.0 else np.minimum(rgb * np.float32(gain), 255.0).astype(np.uint8)


def _prior(ys: F32, xs: F32, sigma: float) -> F32:
    """Centre prior at frame coordinates in [-1, 1]: (h,) x (w,) -> (h, w) (separable)."""
    c = np.float32(-0.5 / (sigma * sigma))
    return np.outer(np.exp(c * ys * ys), np.exp(c * xs * xs)).astype(np.float32)


def _grid(n: int) -> F32:
    return np.linspace(-1.0, 1.0, n, dtype=np.float32)


def _erode(a: F32) -> F32:
    """(h, w) -> (h, w): minimum over each 3x3 neighbourhood (edges replicated)."""
    m = a.copy()
    np.minimum(m[1:], a[:-1], out=m[1:])
    np.minimum(m[:-1], a[1:], out=m[:-1])
    out = m.copy()
    np.minimum(out[:, 1:], m[:, :-1], out=out[:, 1:])
    np.minimum(out[:, :-1], m[:, 1:], out=out[:, :-1])
    return out


# ---- product / background separation ----------------------------------------------------------
def background_colours(lab: F32, k: Knobs = KNOBS) -> F32:
    """(h, w, 3) Lab of a whole frame -> (b, 3) Lab background colours (b may be 0).

    Background = the frame's colours that are MORE common on the frame than in the
    centre-weighted image: a studio backdrop, a floor, legs coming in from the top edge. A
    colour the product brings to the frame (a boot cut by the edge) is commoner in the centre,
    so it stays product. No threshold on how common: the comparison is the rule."""
    h, w, _ = lab.shape
    ring = np.concatenate([lab[0], lab[1:, -1], lab[-1, -2::-1], lab[-2:0:-1, 0]])  # (m, 3)
    ring = ring[np.linspace(0, len(ring) - 1, min(k.border_samples, len(ring))).astype(int)]
    tol2 = k.bg_tolerance**2
    prior = _prior(_grid(h), _grid(w), k.centre_sigma)[::2, ::2].reshape(-1)  # every other px
    near = sq_dist(lab[::2, ::2].reshape(-1, 3), ring, k.bg_light_weight) < tol2  # (n, m)
    share = (sq_dist(ring, ring, k.bg_light_weight) < tol2).mean(1)  # (m,) on the frame
    cover = prior @ near.astype(np.float32) / prior.sum()  # (m,) in the centre-weighted image
    background = ring[share > cover]
    cell = np.round(background / 2.0).astype(np.int64) + 128  # 2-ΔE cells, one colour each
    _, first = np.unique((cell[:, 0] << 16) | (cell[:, 1] << 8) | cell[:, 2], return_index=True)
    return np.asarray(background[np.sort(first)], np.float32)


def product_weights(lab: F32, background: F32, ys: F32, xs: F32, k: Knobs = KNOBS) -> F32:
    """(h, w, 3) Lab, (b, 3) background, pixel coordinates ys (h,), xs (w,) in [-1, 1]
    -> (h, w) float32 in [0, 1], how surely each pixel is product: a ramp from fg_low to fg_high
    in ΔE to the nearest background colour, opened (thin streaks such as leg edges go), times
    the centre prior. When nothing stands out (a busy photo, a product filling the frame) the
    centre prior alone: degrade to 'look at the middle', never to nothing."""
    h, w, _ = lab.shape
    prior = _prior(ys, xs, k.centre_sigma)
    if len(background) == 0:
        return prior
    # A running minimum over the background colours, one (h, w) pass each: cheaper than the
    # (h * w, b) distance matrix for a plain backdrop's few colours and for the up to
    # border_samples of a busy frame alike (measured: docs/evaluation.md, "Speed").
    lw2 = np.float32(k.bg_light_weight**2)
    d2 = np.full((h, w), np.inf, np.float32)
    ll, aa, bb = lab[..., 0], lab[..., 1], lab[..., 2]
    for bg_l, bg_a, bg_b in background:
        dl, da, db = ll - bg_l, aa - bg_a, bb - bg_b
        dl *= dl
        dl *= lw2
        da *= da
        db *= db
        dl += da
        dl += db
        np.minimum(d2, dl, out=d2)
    d = np.sqrt(d2)
    fg = np.clip((d - k.fg_low) / (k.fg_high - k.fg_low), 0.0, 1.0).astype(np.float32)
    if fg.mean() < k.min_foreground:
        return prior
    if k.open_mask:
        fg = -_erode(-_erode(fg))  # erosion then dilation
    return fg * prior


def foreground_mask(rgb: U8, k: Knobs = KNOBS, prior: bool = True) -> F32:
    """The mask step on its own: (H, W, 3) uint8 -> (h, w) float32 weights in [0, 1] at
    mask_size, with or without the centre prior (for display and checks; describe() runs the
    same steps)."""
    small = resize(rgb, k.mask_size)
    lab = srgb_to_lab(_gain(small, white_patch_gain(small, k.max_gain)))
    background = background_colours(lab, k)
    if not prior:
        k = replace(k, centre_sigma=1e6)
    return product_weights(lab, background, _grid(lab.shape[0]), _grid(lab.shape[1]), k)


def product_box(weights: F32, margin: float = 0.04) -> tuple[float, float, float, float]:
    """(h, w) weights -> (top, left, bottom, right) as frame fractions: the 2 %-98 % weighted
    quantiles along each axis plus a margin (robust to specks)."""

    def span(profile: npt.NDArray[np.float64]) -> tuple[float, float]:
        c = np.cumsum(profile) / max(float(profile.sum()), 1e-9)
        n = len(profile)
        lo, hi = np.searchsorted(c, 0.02) / n, (np.searchsorted(c, 0.98) + 1) / n
        return max(0.0, lo - margin), min(1.0, hi + margin)

    top, bottom = span(weights.sum(1, dtype=np.float64))
    left, right = span(weights.sum(0, dtype=np.float64))
    return top, left, bottom, right


def pattern_score(lab: F32, weights: F32, k: Knobs = KNOBS) -> float:
    """Share of neighbouring solid-product pixel pairs whose colours differ by more than
    pattern_edge ΔE: high for prints (florals, leopard, checks), low for plain products."""
    solid = weights > 0.5 * weights.max()
    edge2 = k.pattern_edge**2
    dh = ((lab[:, 1:] - lab[:, :-1]) ** 2).sum(-1) > edge2
    dv = ((lab[1:] - lab[:-1]) ** 2).sum(-1) > edge2
    mh, mv = solid[:, 1:] & solid[:, :-1], solid[1:] & solid[:-1]
    n = int(mh.sum() + mv.sum())
    return float(dh[mh].sum() + dv[mv].sum()) / n if n else 0.0


def describe(rgb: U8, k: Knobs = KNOBS) -> F32:
    """(H, W, 3) uint8 RGB -> (DIM,) float32 descriptor:
    [0:N_PROTO] prototype histogram of the product (sums to 1), [N_PROTO] pattern score,
    [N_PROTO + 1] product share of the frame (a quality flag: ~0 or ~1 means 'mask unsure').
    The product box is described at a fixed size, so the pattern score does not depend on how
    large the product is in the photo. Pass a photo already reduced to a few hundred pixels
    (e.g. decoded with Image.draft): on a 2000x3000 array the resizes alone cost ~30 ms."""
    small = resize(rgb, k.mask_size)
    gain = white_patch_gain(small, k.max_gain)
    lab_small = srgb_to_lab(_gain(small, gain))
    background = background_colours(lab_small, k)
    sh, sw = lab_small.shape[:2]
    coarse = product_weights(lab_small, background, _grid(sh), _grid(sw), k)
    top, left, bottom, right = product_box(coarse)
    full_h, full_w = rgb.shape[:2]
    y0, x0 = int(top * full_h), int(left * full_w)
    y1, x1 = max(y0 + 1, int(np.ceil(bottom * full_h))), max(x0 + 1, int(np.ceil(right * full_w)))
    crop = _gain(resize(rgb[y0:y1, x0:x1], k.work_size, enlarge=True), gain)  # (h, w, 3)
    lab = srgb_to_lab(crop)
    # The centre prior now in the product box's own coordinates (-1 to 1 across the box), not the
    # frame's: how much each part of the product (upper, sole, heel) counts no longer depends on
    # where the product sits in the photo or how much floor is around it (a customer's photo
    # frames it smaller and off-centre). Named colour unchanged under a customer's-photo change:
    # 0.898 -> 0.919 (bench `colour`, seeds 0-9; docs/evaluation.md "Robustness").
    weights = product_weights(lab, background, _grid(crop.shape[0]), _grid(crop.shape[1]), k)
    q = (crop >> 3).astype(np.intp)  # 5-bit RGB -> table row
    counts = np.bincount(
        ((q[..., 0] << 10) | (q[..., 1] << 5) | q[..., 2]).reshape(-1),
        weights=weights.reshape(-1),
        minlength=1 << 15,
    )
    used = np.flatnonzero(counts)
    hist = counts[used].astype(np.float32) @ membership_table(k)[used]  # (P,)
    out = np.zeros(DIM, np.float32)
    out[:N_PROTO] = hist / max(float(hist.sum()), 1e-9)
    coarse_crop = resize(crop, k.pattern_size, enlarge=True)  # the pattern at a coarser scale
    coarse_w = Image.fromarray(weights).resize(coarse_crop.shape[1::-1], Image.Resampling.BILINEAR)
    out[N_PROTO] = pattern_score(srgb_to_lab(coarse_crop), np.asarray(coarse_w, np.float32), k)
    out[N_PROTO + 1] = float(coarse.mean())
    return out
