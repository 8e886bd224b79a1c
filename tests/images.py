"""Test images made in memory: real encoded bytes from Pillow (or hand-written headers).

Nothing here touches the disk. Builders of large or slow inputs are cached, so call them
freely; they return immutable bytes.
"""

import functools
import io
import struct
import zlib
from typing import Any

import numpy as np
from PIL import ExifTags, Image

RED = (255, 0, 0)
WHITE = (255, 255, 255)
MID_GREY_16_BIT = 0x8080  # 32896 = 128 * 257: exactly 8-bit 128 when scaled down

# Pixel transform that stores an upright picture so that a viewer applying the EXIF
# orientation shows it upright again (the inverse of what the orientation asks for).
_STORE_FOR_ORIENTATION = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,  # orientation 6 = "rotate 90° clockwise to display"
    8: Image.Transpose.ROTATE_270,  # orientation 8 = "rotate 90° counter-clockwise to display"
}


def encode(image: Image.Image, image_format: str, **params: Any) -> bytes:
    """Encode an image as Pillow would write it to a file."""
    buffer = io.BytesIO()
    image.save(buffer, image_format, **params)
    return buffer.getvalue()


def photo_like(width: int = 96, height: int = 64, *, seed: int = 0) -> Image.Image:
    """An RGB picture with smooth gradients, edges and some noise, different in every
    direction, so rotations, flips and resizing all change it visibly."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 255 * x / max(width - 1, 1)
    green = 255 * y / max(height - 1, 1)
    blue = np.where((x < width / 3) & (y < height / 2), 230.0, 40.0)  # a block in one corner
    pixels = np.stack([red, green, blue], axis=-1) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def solid(mode: str, size: tuple[int, int], colour: Any) -> Image.Image:
    return Image.new(mode, size, colour)


def half_transparent_rgba(size: tuple[int, int] = (40, 30)) -> Image.Image:
    """Left half fully transparent black, right half opaque red."""
    image = Image.new("RGBA", size, (*RED, 255))
    image.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    return image


def transparent_png() -> bytes:
    return encode(half_transparent_rgba(), "PNG")


def transparent_webp() -> bytes:
    return encode(half_transparent_rgba(), "WEBP", lossless=True)


def palette_png_with_transparency_key() -> bytes:
    """Mode P: index 0 (black) is the transparent colour, the right half uses red index 1."""
    image = Image.new("P", (40, 30), 0)
    image.putpalette([0, 0, 0, *RED])
    image.paste(1, (20, 0, 40, 30))
    return encode(image, "PNG", transparency=0)


def grey_alpha_png() -> bytes:
    """Mode LA: left half black and fully transparent, right half opaque grey 100."""
    image = Image.new("LA", (40, 30), (100, 255))
    image.paste((0, 0), (0, 0, 20, 30))
    return encode(image, "PNG")


def cmyk_jpeg(colour: tuple[int, int, int, int] = (0, 255, 255, 0)) -> bytes:
    """A solid CMYK JPEG; the default colour (no cyan, full magenta and yellow) is red."""
    return encode(Image.new("CMYK", (32, 32), colour), "JPEG", quality=95)


def sixteen_bit_grey_png(value: int = MID_GREY_16_BIT, **params: Any) -> bytes:
    return encode(Image.new("I;16", (16, 16), value), "PNG", **params)


def sixteen_bit_gradient_png() -> bytes:
    """One row from 0 to 65535 (16-bit greyscale PNG), 256 pixels wide."""
    row = np.linspace(0, 65535, 256).round().astype(np.uint16)
    return encode(Image.fromarray(np.tile(row, (4, 1))), "PNG")


def frames_of_colours(count: int, size: tuple[int, int] = (16, 16)) -> list[Image.Image]:
    """count distinct solid RGB frames, the first one red."""
    frames = [Image.new("RGB", size, RED)]
    frames += [
        Image.new("RGB", size, ((index * 7) % 256, (index * 13) % 256, index % 200))
        for index in range(1, count)
    ]
    return frames


@functools.cache
def animated(image_format: str, frame_count: int) -> bytes:
    """An animation whose first frame is solid red (GIF, WEBP or PNG, i.e. APNG)."""
    first, *rest = frames_of_colours(frame_count)
    params: dict[str, Any] = {"save_all": True, "append_images": rest, "duration": 40}
    if image_format == "WEBP":
        params["lossless"] = True
    return encode(first, image_format, **params)


def with_orientation(upright: Image.Image, orientation: int, image_format: str) -> bytes:
    """Store upright's pixels turned so that applying the EXIF orientation shows upright."""
    stored = upright.transpose(_STORE_FOR_ORIENTATION[orientation])
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    params: dict[str, Any] = {"exif": exif}
    if image_format == "JPEG":
        params["quality"] = 95
    return encode(stored, image_format, **params)


def mpo(image: Image.Image) -> bytes:
    """A multi-picture JPEG (what some phones save), the same picture twice."""
    return encode(image, "MPO", save_all=True, append_images=[image])


def jpeg_declaring_size(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header claims width x height, without its end marker.

    Opening it reports the claimed size; decoding it fails as truncated (with the end marker
    libjpeg would quietly pad the missing rows). So an error about the size proves that a
    check ran before decoding.
    """
    data = bytearray(encode(photo_like(32, 32), "JPEG"))
    assert data.endswith(b"\xff\xd9")
    del data[-2:]  # EOI
    position = 2  # after SOI
    while position < len(data):
        marker = data[position + 1]
        segment_length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):  # SOF: length, precision, height, width
            struct.pack_into(">HH", data, position + 5, height, width)
            return bytes(data)
        position += 2 + segment_length
    raise AssertionError("no SOF segment in Pillow's JPEG")


def webp_declaring_size(width: int, height: int) -> bytes:
    """A small animated (so extended, VP8X) WebP whose header claims a width x height canvas."""
    data = bytearray(animated("WEBP", 2))
    assert data[12:16] == b"VP8X"
    data[24:27] = (width - 1).to_bytes(3, "little")
    data[27:30] = (height - 1).to_bytes(3, "little")
    return bytes(data)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


@functools.cache
def huge_black_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit greyscale PNG, streamed row by row through zlib.

    20000x20000 comes out around 50 KB and never exists as pixels in memory.
    """
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte "none", then packed pixels
    compressor = zlib.compressobj(9)
    compressed = b"".join(compressor.compress(row) for _ in range(height))
    compressed += compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", compressed)
        + _png_chunk(b"IEND", b"")
    )


def truncated(data: bytes) -> bytes:
    """The first half of a file, as an interrupted upload leaves it."""
    return data[: len(data) // 2]


def plain_text() -> bytes:
    return b"This is not a photo, just some text saved with a .jpg name.\n"


def minimal_pdf() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
        b"trailer << /Root 1 0 R >>\n%%EOF\n"
    )


def elf_executable() -> bytes:
    """The start of a 64-bit little-endian Linux executable (ELF header) plus padding."""
    return b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00" + b"\x00" * 200


def heic_header() -> bytes:
    """The opening "ftyp" box of an iPhone HEIC photo."""
    return b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
