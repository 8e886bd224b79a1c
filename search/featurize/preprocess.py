"""Image bytes -> a backbone's input array, exactly as Keras prepares an ordinary RGB file.

For a plain RGB file, ``preprocess_image(data)`` is bit-for-bit equal to::

    keras.applications.vgg16.preprocess_input(
        keras.utils.img_to_array(keras.utils.load_img(path, target_size=(224, 224))))

i.e. convert to RGB, resize to 224x224 with PIL NEAREST (Keras' default interpolation), float32
HWC, RGB->BGR and subtract the ImageNet BGR mean ("caffe" mode, no scaling).

Other backbones (search.featurize.backbones) pass their own ``target_size`` and ``preprocessing``;
the result is then bit-for-bit the same pipeline ending in that model's ``preprocess_input``: "tf"
(inception_v3) scales to [-1, 1], "torch" (densenet121) divides by 255 and normalises with the
ImageNet RGB mean and std, "none" (efficientnet_b0) leaves the 0..255 pixels alone.

Unlike Keras it also copes with what phones and shops send (EXIF rotation, transparency,
16-bit greys, animations, CMYK) and refuses unusable input with `InvalidImageError`, checking
size and format from the header before any pixel is decoded.

This module must not import TensorFlow or Keras: it is imported by code that has to start fast.
"""

import io
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from search.errors import InvalidImageError
from search.featurize.backbones import Preprocessing

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "IMAGENET_MEAN_RGB",
    "IMAGENET_STD_RGB",
    "TARGET_SIZE",
    "VGG16_MEAN_BGR",
    "ImageInfo",
    "InvalidImageError",
    "caffe_preprocess",
    "inspect_image",
    "load_rgb",
    "preprocess_image",
    "preprocess_pixels",
    "resize_to_array",
    "to_model_input",
]

TARGET_SIZE: tuple[int, int] = (224, 224)  # (height, width)
VGG16_MEAN_BGR: tuple[float, float, float] = (103.939, 116.779, 123.68)
# "torch" mode (Keras imagenet_utils): applied to 0..1 RGB values.
IMAGENET_MEAN_RGB: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB: tuple[float, float, float] = (0.229, 0.224, 0.225)
DEFAULT_MAX_PIXELS = 64_000_000  # a 48 MP phone photo passes, 12000x12000 does not
DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # what a Telegram bot can download

# Product photos only: PDF, EPS, ICO, PSD... are refused even though Pillow could read some.
ACCEPTED_FORMATS: Final = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})
# The Pillow openers to try. MPO (multi-picture phone JPEGs) has no opener of its own: the JPEG
# opener returns an MPO image when it finds one. Restricting the openers also keeps the other
# ~40 Pillow parsers away from untrusted bytes.
_PILLOW_OPENERS: Final = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
_ACCEPTED_FOR_HUMANS: Final = "JPEG, PNG, WebP, GIF, BMP or TIFF"

_DAMAGED_MESSAGE: Final = "The image file is damaged or incomplete and cannot be read."

# EXIF orientations 5-8 turn the picture a quarter turn, so width and height trade places.
_QUARTER_TURN_ORIENTATIONS: Final = frozenset({5, 6, 7, 8})

# Pillow opens 16-bit greyscale (PNG, TIFF) in these modes; its own convert("L") clips
# every value above 255 to white, so they are scaled to 8 bits here instead.
_SIXTEEN_BIT_GREY_MODES: Final = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
# round(v / 257) for every 16-bit v: 0 -> 0, 32896 -> 128, 65535 -> 255.
_SIXTEEN_TO_EIGHT_BIT: Final = ((np.arange(65536, dtype=np.uint32) + 128) // 257).astype(np.uint8)

_WHITE: Final = (255, 255, 255)
_MEAN_BGR: Final = np.array(VGG16_MEAN_BGR, dtype=np.float32)
_MEAN_BGR.flags.writeable = False
# Keras does `float32 x -= 0.485` per channel: the Python float is rounded to float32 first,
# so float32 constants give the same bits.
_TORCH_MEAN: Final = np.array(IMAGENET_MEAN_RGB, dtype=np.float32)
_TORCH_MEAN.flags.writeable = False
_TORCH_STD: Final = np.array(IMAGENET_STD_RGB, dtype=np.float32)
_TORCH_STD.flags.writeable = False


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the header says about an image that passed validation."""

    format: str  # PIL format name, e.g. "JPEG"
    width: int  # after EXIF orientation is applied
    height: int
    frames: int  # 1 for still images


def inspect_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ImageInfo:
    """Validate from the header only (no pixel decoding): size, format, pixel count.

    Returns the format, the displayed width and height (EXIF orientation applied) and the
    number of frames. Raises `InvalidImageError` for empty, oversized, unsupported or
    unreadable input. A file whose pixel data is damaged can still pass: only decoding
    (`load_rgb`) finds that out.
    """
    image = _open_validated(data, max_pixels=max_pixels, max_bytes=max_bytes)
    width, height = image.size
    if _header_orientation(image) in _QUARTER_TURN_ORIENTATIONS:
        width, height = height, width
    try:
        with _pillow_bomb_warning_silenced():
            # Counting GIF frames walks the file, skipping pixel data without decoding it.
            frames = int(getattr(image, "n_frames", 1))
    except Exception as err:  # malformed frame structure, whatever Pillow raises for it
        raise InvalidImageError(_DAMAGED_MESSAGE) from err
    assert image.format is not None  # _open_validated refused images without a format
    return ImageInfo(format=image.format, width=width, height=height, frames=frames)


def load_rgb(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Image.Image:
    """Validated, fully decoded, first frame, EXIF-transposed, alpha on white, 8-bit RGB image.

    The result has mode "RGB" and size (width, height) as displayed. Everything is validated
    from the header (as `inspect_image` does) before pixels are decoded; decoding errors such
    as a truncated file raise `InvalidImageError` too.
    """
    image = _open_validated(data, max_pixels=max_pixels, max_bytes=max_bytes)
    try:
        with _pillow_bomb_warning_silenced():
            image.load()  # the first frame: Image.open leaves animations positioned there
    except Image.DecompressionBombError as err:
        raise InvalidImageError(_too_many_pixels_message(max_pixels)) from err
    except Exception as err:  # truncated or corrupt data: Pillow raises many exception types
        raise InvalidImageError(_DAMAGED_MESSAGE) from err

    # The pixels are decoded, so anything failing here is in the EXIF block itself; a photo
    # with unreadable EXIF is still a photo, so keep it the way it is stored.
    with suppress(Exception):
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of a 48 MP photo

    mode = image.mode
    try:
        return _to_rgb(image)
    except ValueError as err:  # Pillow cannot convert this mode to RGB
        msg = f"The image uses an unsupported colour format ({mode})."
        raise InvalidImageError(msg) from err


def resize_to_array(
    image: Image.Image, *, target_size: tuple[int, int] = TARGET_SIZE
) -> npt.NDArray[np.float32]:
    """RGB PIL image -> (height, width, 3) float32 array of 0..255 values, resized NEAREST.

    Same as Keras' load_img(target_size=...) followed by img_to_array: no resize when the
    size already matches, otherwise a plain PIL NEAREST resize to (width, height).
    """
    _require_rgb(image)
    height, width = target_size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.NEAREST)
    return np.asarray(image, dtype=np.float32)


def caffe_preprocess(pixels: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """(..., 3) RGB 0..255 array -> (..., 3) float32 BGR array minus the ImageNet BGR mean.

    Works on one (H, W, 3) image or an (N, H, W, 3) batch; the input is not modified.
    Equal to keras.applications.vgg16.preprocess_input on a float32 array (which, unlike this,
    modifies its argument in place).
    """
    rgb = _rgb_float32(pixels)
    # One float32 subtraction per value, as Keras does (float32 x -= Python float).
    return np.ascontiguousarray(rgb[..., ::-1] - _MEAN_BGR)


def preprocess_pixels(
    pixels: npt.ArrayLike, preprocessing: Preprocessing = "caffe"
) -> npt.NDArray[np.float32]:
    """(..., 3) RGB 0..255 array -> (..., 3) float32 model input for a preprocessing mode.

    Works on one (H, W, 3) image or an (N, H, W, 3) batch and returns a new C-contiguous
    array (the input is not modified). Bit-for-bit equal, on a float32 array, to the
    `preprocess_input` of the Keras module using that mode:

    - "caffe" (vgg16, resnet50): `caffe_preprocess`.
    - "tf" (inception_v3): x / 127.5 - 1.
    - "torch" (densenet121): (x / 255 - ImageNet RGB mean) / ImageNet RGB std.
    - "none" (efficientnet_b0): unchanged, the model rescales inside.
    """
    # A lookup rather than an if-chain: callers outside mypy's reach may pass any string.
    apply = _PREPROCESSORS.get(preprocessing)
    if apply is None:
        known = ", ".join(_PREPROCESSORS)
        msg = f"unknown preprocessing {preprocessing!r}; use one of {known}"
        raise ValueError(msg)
    return apply(_rgb_float32(pixels))


def to_model_input(
    image: Image.Image,
    *,
    size: tuple[int, int] = TARGET_SIZE,
    preprocessing: Preprocessing = "caffe",
    target_size: tuple[int, int] | None = None,
) -> npt.NDArray[np.float32]:
    """RGB PIL image -> (H, W, 3) float32 model input.

    Resize NEAREST to size = (H, W), then `preprocess_pixels` in the given mode; the defaults
    are VGG16's (224x224, caffe: RGB->BGR, minus the ImageNet BGR mean). For another backbone
    pass `size=spec.input_size, preprocessing=spec.preprocessing`. `target_size` is the older
    name of `size`, still accepted. np.stack several results to make an (N, H, W, 3) batch.
    Raises ValueError if the image is not in RGB mode (use `load_rgb` to get one) or the mode
    is unknown.
    """
    if target_size is not None:
        if size not in (TARGET_SIZE, target_size):
            msg = f"size={size} and target_size={target_size} disagree; pass only size"
            raise ValueError(msg)
        size = target_size
    return preprocess_pixels(resize_to_array(image, target_size=size), preprocessing)


def preprocess_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    size: tuple[int, int] = TARGET_SIZE,
    preprocessing: Preprocessing = "caffe",
) -> npt.NDArray[np.float32]:
    """bytes -> (H, W, 3) float32, the model input for one image: (224, 224, 3) caffe-mode
    VGG16 input by default, `size=spec.input_size, preprocessing=spec.preprocessing` for
    another backbone.

    Raises `InvalidImageError` for anything `load_rgb` refuses.
    """
    return to_model_input(
        load_rgb(data, max_pixels=max_pixels, max_bytes=max_bytes),
        size=size,
        preprocessing=preprocessing,
    )


# --------------------------------------------------------------------------------------------
# Validation


def _open_validated(data: bytes, *, max_pixels: int, max_bytes: int) -> Image.Image:
    """Open lazily (header only) and refuse anything that should not be decoded."""
    if not data:
        raise InvalidImageError("The file is empty.")
    if len(data) > max_bytes:
        msg = f"The file is too large; the limit is {_human_bytes(max_bytes)}."
        raise InvalidImageError(msg)

    # Pillow's WebP opener allocates the whole canvas while opening, so a WebP bomb has to be
    # caught before Image.open; other formats allocate only on load().
    webp_size = _webp_canvas_size(data)
    if webp_size is not None and webp_size[0] * webp_size[1] > max_pixels:
        raise InvalidImageError(_too_many_pixels_message(max_pixels, webp_size))

    try:
        with _pillow_bomb_warning_silenced():
            image = Image.open(io.BytesIO(data), formats=_PILLOW_OPENERS)
    except Image.DecompressionBombError as err:  # over 2x Image.MAX_IMAGE_PIXELS, size unknown
        raise InvalidImageError(_too_many_pixels_message(max_pixels)) from err
    except UnidentifiedImageError as err:
        raise InvalidImageError(_not_an_image_message(data)) from err
    except Exception as err:  # a recognised format whose header is broken
        raise InvalidImageError(_DAMAGED_MESSAGE) from err

    if image.format not in ACCEPTED_FORMATS:
        raise InvalidImageError(_not_an_image_message(data))
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImageError(_DAMAGED_MESSAGE)
    if width * height > max_pixels:
        raise InvalidImageError(_too_many_pixels_message(max_pixels, (width, height)))
    return image


@contextmanager
def _pillow_bomb_warning_silenced() -> Iterator[None]:
    """Keep Pillow's DecompressionBombWarning (images over ~89 MP) out of the logs.

    Our own max_pixels check replaces it. warnings.catch_warnings is process-wide, so threads
    overlapping here may leave this one "ignore" filter installed: harmless, for the same reason.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _header_orientation(image: Image.Image) -> int:
    """EXIF orientation (1-8) from the already parsed header, 1 when absent or unreadable."""
    try:
        # Image.Image.getexif, not the subclass method: PngImageFile.getexif decodes the whole
        # image when the header has no eXIf chunk, and this must stay header-only.
        orientation = Image.Image.getexif(image).get(ExifTags.Base.Orientation, 1)
    except Exception:  # corrupt EXIF: load_rgb ignores it too
        return 1
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


def _webp_canvas_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a WebP header, None if data is not a WebP file we can size."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:  # extended: 24-bit canvas size minus one
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:  # lossless: 14-bit fields
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":  # lossy
        width = int.from_bytes(data[26:28], "little") & 0x3FFF
        height = int.from_bytes(data[28:30], "little") & 0x3FFF
        return width, height
    return None


def _too_many_pixels_message(max_pixels: int, size: tuple[int, int] | None = None) -> str:
    dimensions = f" ({size[0]}x{size[1]} pixels)" if size is not None else ""
    return (
        f"The image is too large{dimensions}; the limit is {max_pixels / 1_000_000:g} megapixels."
    )


def _not_an_image_message(data: bytes) -> str:
    please = f"please send a {_ACCEPTED_FOR_HUMANS} photo."
    if data.startswith(b"%PDF"):
        return f"This file is a PDF document, not an image; {please}"
    # ISO media "ftyp" box: iPhones send HEIC when a photo is sent as a file.
    if data[4:8] == b"ftyp" and data[8:12] in {b"heic", b"heix", b"heim", b"heis", b"mif1"}:
        return f"HEIC photos are not supported; {please}"
    if data[4:8] == b"ftyp" and data[8:12] in {b"avif", b"avis"}:
        return f"AVIF images are not supported; {please}"
    return f"This file is not a supported image; {please}"


def _human_bytes(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.1f} MB".replace(".0 MB", " MB")
    if count >= 1024:
        return f"{count / 1024:.1f} KB".replace(".0 KB", " KB")
    return f"{count} bytes"


# --------------------------------------------------------------------------------------------
# Pixels


def _to_rgb(image: Image.Image) -> Image.Image:
    """Decoded image of any mode -> 8-bit RGB, transparent parts on white."""
    if image.mode in _SIXTEEN_BIT_GREY_MODES:
        return _sixteen_bit_grey_to_rgb(image)
    if image.has_transparency_data:
        return _flatten_on_white(image)
    if image.mode != "RGB":
        # Same conversion Keras' load_img applies, so L, P, 1 and CMYK files keep parity.
        return image.convert("RGB")
    return image


def _sixteen_bit_grey_to_rgb(image: Image.Image) -> Image.Image:
    # "I" is 32-bit signed; Pillow only produces it from 16-bit sources in practice.
    values = np.clip(np.asarray(image), 0, 65535)
    grey = _SIXTEEN_TO_EIGHT_BIT[values]
    transparent_value = image.info.get("transparency")
    if isinstance(transparent_value, int):  # PNG tRNS key for greyscale
        grey[values == transparent_value] = 255
    return Image.fromarray(grey).convert("RGB")


def _flatten_on_white(image: Image.Image) -> Image.Image:
    if image.mode == "La":  # premultiplied; Pillow cannot convert it straight to RGBA
        image = image.convert("LA")
    # RGBA also resolves palette alpha and single-colour transparency keys (P, L, RGB + tRNS).
    rgba = image.convert("RGBA")
    flattened = Image.new("RGB", rgba.size, _WHITE)
    flattened.paste(rgba, mask=rgba.getchannel("A"))
    return flattened


# Preprocessing mode -> (..., 3) float32 RGB 0..255 -> (..., 3) float32, a new C-contiguous array;
# one entry per value of search.featurize.backbones.Preprocessing. The same float32 operations, in
# the same order, as Keras' in-place ones: "tf" is x /= 127.5; x -= 1.0, "torch" is x /= 255.0;
# x[..., c] -= mean[c]; x[..., c] /= std[c].
_PREPROCESSORS: Final[dict[str, Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]]] = {
    "caffe": caffe_preprocess,
    "tf": lambda rgb: np.ascontiguousarray(rgb / np.float32(127.5) - np.float32(1.0)),
    "torch": lambda rgb: np.ascontiguousarray((rgb / np.float32(255.0) - _TORCH_MEAN) / _TORCH_STD),
    "none": lambda rgb: np.array(rgb, dtype=np.float32, order="C"),  # a copy, never the caller's
}


def _rgb_float32(pixels: npt.ArrayLike) -> npt.NDArray[np.float32]:
    rgb = np.asarray(pixels, dtype=np.float32)
    if rgb.ndim < 1 or rgb.shape[-1] != 3:
        msg = f"expected an array of shape (..., 3), got {rgb.shape}"
        raise ValueError(msg)
    return rgb


def _require_rgb(image: Image.Image) -> None:
    if image.mode != "RGB":
        msg = f"expected an RGB image, got mode {image.mode!r}; use load_rgb() to get one"
        raise ValueError(msg)
