"""A catalogue photo changed as a customer's photo of the same product would be (numpy + Pillow),
for the colour robustness row of `lookalike bench` (bench.colour):

  1. paste: the product cut out of its plain backdrop (a simple RGB-distance alpha, on purpose
     not search.colour's own mask) and pasted, at a random offset, onto a canvas 1.25-2x its
     size made of a 2 x 2 mosaic of crops of the floor, wall and legs of
     queries/search_image_02.jpg (never its boots);
  2. crop: 0-10 % off each side (the product may be cut a little), then scaled to a longer side
     of 160-480 px;
  3. brightness x U(0.85, 1.15);
  4. JPEG quality 60, decoded again.

A photo whose backdrop is not plain (a scene, a gradient) skips step 1: pasting needs a cut-out.
Every random number comes from numpy's PCG64 seeded with (seed, photo number, step): a row is
reproducible, one photo's variant does not depend on which others run, and a step run alone
draws the numbers it draws in the full chain.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter

__all__ = ["BACKGROUND_REGIONS", "STEPS", "Augmented", "augment", "cutout_alpha"]

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

# Regions of search_image_02.jpg as frame fractions (top, left, bottom, right) free of the
# boots: the legs and wall above them, the wall and floor strips beside them (by eye).
BACKGROUND_REGIONS = ((0.0, 0.0, 0.27, 1.0), (0.0, 0.0, 1.0, 0.17), (0.0, 0.84, 1.0, 1.0))
STEPS = ("paste", "crop", "brightness", "jpeg")
JPEG_QUALITY = 60


@dataclass(frozen=True)
class Augmented:
    image: U8  # (H, W, 3)
    pasted: bool  # step 1 ran (the backdrop was plain)


def cutout_alpha(rgb: U8) -> F32 | None:
    """(H, W, 3) -> (H, W) alpha in [0, 1] (distance to the backdrop's median colour, 12-32 RGB
    units, softened), or None when the backdrop is not plain (its pixels spread by more than 12
    units around their median, or a quarter of them by more than 30)."""
    frame = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.float32)
    median = np.median(frame, axis=0)
    spread = np.abs(frame - median).max(1)
    if np.median(spread) > 12 or np.mean(spread > 30) > 0.25:
        return None
    distance = np.abs(rgb.astype(np.float32) - median).max(-1)
    alpha = np.clip((distance - 12.0) / 20.0, 0.0, 1.0)
    soft = Image.fromarray((alpha * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))
    return np.asarray(soft, dtype=np.float32) / 255.0


def _busy_background(rng: np.random.Generator, height: int, width: int, source: U8) -> U8:
    """(height, width, 3): a 2 x 2 mosaic of random crops of BACKGROUND_REGIONS of `source`."""
    sh, sw = source.shape[:2]
    out = np.zeros((height, width, 3), np.uint8)
    ys, xs = (0, height // 2, height), (0, width // 2, width)
    for i in range(2):
        for j in range(2):
            top, left, bottom, right = BACKGROUND_REGIONS[rng.integers(len(BACKGROUND_REGIONS))]
            rh = max(8, int((bottom - top) * sh * rng.uniform(0.5, 1.0)))
            rw = max(8, int((right - left) * sw * rng.uniform(0.5, 1.0)))
            y = int(top * sh) + int(rng.integers(0, max(1, int((bottom - top) * sh) - rh + 1)))
            x = int(left * sw) + int(rng.integers(0, max(1, int((right - left) * sw) - rw + 1)))
            tile = Image.fromarray(source[y : y + rh, x : x + rw])
            if rng.random() < 0.5:
                tile = tile.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            size = (xs[j + 1] - xs[j], ys[i + 1] - ys[i])
            out[ys[i] : ys[i + 1], xs[j] : xs[j + 1]] = np.asarray(
                tile.resize(size, Image.Resampling.BILINEAR)
            )
    return out


def _paste(rgb: U8, rng: np.random.Generator, source: U8) -> U8 | None:
    alpha = cutout_alpha(rgb)
    if alpha is None or alpha.mean() < 0.02:
        return None
    rows, cols = np.flatnonzero(alpha.max(1) > 0.5), np.flatnonzero(alpha.max(0) > 0.5)
    if len(rows) == 0:
        return None
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    product, a = rgb[y0:y1, x0:x1].astype(np.float32), alpha[y0:y1, x0:x1, None]
    ph, pw = product.shape[:2]
    scale = rng.uniform(1.25, 2.0)  # the canvas against the product
    ch, cw = int(ph * scale), int(pw * scale)
    canvas = _busy_background(rng, ch, cw, source).astype(np.float32)
    cy = int((ch - ph) / 2 + rng.uniform(-0.15, 0.15) * (ch - ph))
    cx = int((cw - pw) / 2 + rng.uniform(-0.15, 0.15) * (cw - pw))
    region = canvas[cy : cy + ph, cx : cx + pw]
    canvas[cy : cy + ph, cx : cx + pw] = a * product + (1 - a) * region
    return np.asarray(canvas.clip(0, 255), dtype=np.uint8)


def _crop_and_scale(rgb: U8, rng: np.random.Generator) -> U8:
    h, w = rgb.shape[:2]
    top, bottom = rng.uniform(0, 0.1, 2)
    left, right = rng.uniform(0, 0.1, 2)
    crop = rgb[int(top * h) : h - int(bottom * h), int(left * w) : w - int(right * w)]
    scale = int(rng.integers(160, 481)) / max(crop.shape[:2])
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    return np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BICUBIC))


def _brightness(rgb: U8, rng: np.random.Generator) -> U8:
    return np.asarray((rgb.astype(np.float32) * rng.uniform(0.85, 1.15)).clip(0, 255), np.uint8)


def _jpeg(rgb: U8) -> U8:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return np.asarray(decoded.convert("RGB"))


def augment(
    rgb: U8, number: int, seed: int, source: U8, steps: tuple[str, ...] = STEPS
) -> Augmented:
    """Catalogue photo `number` (its file's number), (H, W, 3), as a customer would photograph
    it, seeded by (seed, number); `source`: search_image_02.jpg's pixels, (H', W', 3)."""
    out, pasted = rgb, False
    rngs = [np.random.Generator(np.random.PCG64([seed, number, step])) for step in range(3)]
    if "paste" in steps:
        candidate = _paste(out, rngs[0], source)
        if candidate is not None:
            out, pasted = candidate, True
    if "crop" in steps:
        out = _crop_and_scale(out, rngs[1])
    if "brightness" in steps:
        out = _brightness(out, rngs[2])
    if "jpeg" in steps:
        out = _jpeg(out)
    return Augmented(out, pasted)
