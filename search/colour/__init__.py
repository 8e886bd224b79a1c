"""The colour of a product photo, from its pixels (numpy + Pillow; no model, no database).

- `describe_image(image)`: a decoded RGB photo -> its colour descriptor, (DIM,) float32: the
  product's share of each CIELAB palette prototype (44), a pattern score and the product's share
  of the frame. Stored per image (`product_images.colour`), computed for every query.
- `name_colours(descriptor)`: (main, second or None), each one of the 17 `NAMES`.
- `similarities(query, matrix)`: (n,) colour similarity in [0, 1] (sharpened name shares and
  how surely each is a print); `blend` mixes it into the VGG similarity after the category step.
- `parse_colour_synonym(text)`: a feed's or a caption's colour word -> one of `NAMES`.
- `SWATCHES`, `chip_colour`, `swatch_css`: how each name is drawn (the page's swatches, the
  evaluation's plot).

How it was chosen and what it measures: docs/evaluation.md ("Colour").
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from search.colour.descriptor import describe
from search.colour.names import blend, name_colours, name_shares, similarities
from search.colour.palette import DIM, F32, NAMES
from search.colour.swatches import SWATCHES, chip_colour, swatch_css
from search.colour.synonyms import parse_colour_synonym

__all__ = [
    "DIM",
    "NAMES",
    "SWATCHES",
    "blend",
    "chip_colour",
    "describe",
    "describe_image",
    "descriptor_bytes",
    "descriptor_of_bytes",
    "name_colours",
    "name_shares",
    "parse_colour_synonym",
    "similarities",
    "stored_colour",
    "swatch_css",
]

# The descriptor is computed on a copy this size at most (longer side, px): catalogue shots are
# already about this size, and a customer's 12 MP photo costs ~30 ms more to describe in full.
DESCRIBE_SIZE = 320


def describe_image(image: Image.Image) -> F32:
    """An RGB PIL image -> (DIM,) float32 descriptor (reduced to DESCRIBE_SIZE first)."""
    width, height = image.size
    if max(width, height) > DESCRIBE_SIZE:
        # A reduced copy straight from the photo (reduce by whole factors, then a box filter),
        # not thumbnail() on a full copy: that copy of a 64 MP photo is 256 MB more.
        scale = DESCRIBE_SIZE / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = image.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return describe(np.asarray(image, dtype=np.uint8))


def descriptor_bytes(descriptor: F32) -> bytes:
    """(DIM,) float32 -> its stored form: DIM little-endian float32 (184 bytes)."""
    return np.asarray(descriptor, dtype="<f4").reshape(DIM).tobytes()


def descriptor_of_bytes(data: bytes) -> F32 | None:
    """The stored form -> (DIM,) float32, or None if it is not a descriptor of this DIM (one
    written by another version of the palette: to be computed again)."""
    if len(data) != 4 * DIM:
        return None
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def stored_colour(descriptor: F32) -> tuple[bytes, str]:
    """What an image row stores of its colour: (descriptor bytes, main colour name)."""
    return descriptor_bytes(descriptor), name_colours(descriptor)[0]
