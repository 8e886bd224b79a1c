"""search.featurize.preprocess: Keras parity on real files, odd inputs accepted, bad inputs refused
early."""

import io
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from search.featurize.preprocess import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    TARGET_SIZE,
    VGG16_MEAN_BGR,
    ImageInfo,
    InvalidImageError,
    caffe_preprocess,
    inspect_image,
    load_rgb,
    preprocess_image,
    to_model_input,
)
from tests import images

REPO_ROOT = Path(__file__).resolve().parents[1]
FOOTWEAR = REPO_ROOT.parent / "shared" / "footwear"  # read-only shared data, never copied

MODEL_INPUT_SHAPE = (*TARGET_SIZE, 3)
_MEAN = np.array(VGG16_MEAN_BGR, dtype=np.float32)


def bgr_after_preprocessing(rgb: tuple[int, int, int]) -> npt.NDArray[np.float32]:
    """What one RGB pixel becomes in the model input: BGR order, ImageNet mean subtracted."""
    return np.array(rgb[::-1], dtype=np.float32) - _MEAN


WHITE_INPUT = bgr_after_preprocessing(images.WHITE)
RED_INPUT = bgr_after_preprocessing(images.RED)

KerasReference = Callable[[Path | io.BytesIO], npt.NDArray[np.float32]]


@pytest.fixture(scope="module")
def keras_reference() -> KerasReference:
    """Keras' own pipeline; imported here because TensorFlow takes seconds to import."""
    keras = pytest.importorskip("keras")

    def reference(source: Path | io.BytesIO) -> npt.NDArray[np.float32]:
        image = keras.utils.load_img(source, target_size=TARGET_SIZE)
        result: npt.NDArray[np.float32] = keras.applications.vgg16.preprocess_input(
            keras.utils.img_to_array(image)
        )
        return result

    return reference


def shared_images(folder: str) -> list[Path]:
    directory = FOOTWEAR / folder
    if not directory.is_dir():
        pytest.skip(f"shared data set not found at {directory}")
    return sorted(path for path in directory.iterdir() if path.is_file())


def assert_model_input(array: npt.NDArray[Any]) -> None:
    assert array.shape == MODEL_INPUT_SHAPE
    assert array.dtype == np.float32
    assert np.isfinite(array).all()


def assert_refused(call: Callable[[], object], *fragments: str) -> str:
    """call() raises InvalidImageError with a one-line message containing every fragment."""
    with pytest.raises(InvalidImageError) as caught:
        call()
    message = str(caught.value)
    assert message.strip() and "\n" not in message
    for fragment in fragments:
        assert fragment.lower() in message.lower(), message
    return message


# ---------------------------------------------------------------------------------------------
# Parity with Keras


def test_every_catalogue_image_matches_keras_exactly(keras_reference: KerasReference) -> None:
    paths = shared_images("catalog")
    assert len(paths) == 300

    mismatched = []
    for path in paths:
        ours = preprocess_image(path.read_bytes())
        assert_model_input(ours)
        if not np.array_equal(ours, keras_reference(path)):
            mismatched.append(path.name)
    assert mismatched == []


def test_query_photos_match_keras_exactly(keras_reference: KerasReference) -> None:
    paths = shared_images("queries")
    assert len(paths) == 2
    for path in paths:
        ours = preprocess_image(path.read_bytes())
        assert_model_input(ours)
        assert np.array_equal(ours, keras_reference(path)), path.name


@pytest.mark.parametrize(
    ("image_format", "image"),
    [
        ("JPEG", images.photo_like(1000, 700)),  # downscale
        ("PNG", images.photo_like(50, 30)),  # upscale
        ("PNG", images.photo_like(224, 224)),  # no resize at all
        ("PNG", images.photo_like(96, 64).convert("L")),
        ("PNG", images.photo_like(96, 64).convert("1")),
        ("GIF", images.photo_like(96, 64)),  # a still palette image
        ("JPEG", images.photo_like(96, 64).convert("CMYK")),
        ("BMP", images.photo_like(96, 64)),
        ("TIFF", images.photo_like(96, 64)),
        ("WEBP", images.photo_like(96, 64)),
    ],
    ids=["jpeg-down", "png-up", "png-224", "grey", "bilevel", "gif", "cmyk", "bmp", "tiff", "webp"],
)
def test_opaque_images_of_any_mode_match_keras_exactly(
    keras_reference: KerasReference, image_format: str, image: Image.Image
) -> None:
    data = images.encode(image, image_format)
    expected = keras_reference(io.BytesIO(data))
    assert np.array_equal(preprocess_image(data), expected)


def test_caffe_preprocess_matches_keras_on_a_batch(keras_reference: KerasReference) -> None:
    import keras  # already imported by the fixture

    batch = np.random.default_rng(1).uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    untouched = batch.copy()
    ours = caffe_preprocess(batch)
    expected = keras.applications.vgg16.preprocess_input(batch.copy())  # works in place
    assert ours.dtype == np.float32
    assert ours.flags.c_contiguous
    assert np.array_equal(ours, expected)
    assert np.array_equal(batch, untouched)


def test_results_stack_into_a_batch() -> None:
    photos = [images.photo_like(96, 64, seed=seed) for seed in range(3)]
    batch = np.stack([to_model_input(photo) for photo in photos])
    assert batch.shape == (3, *MODEL_INPUT_SHAPE)
    assert batch.dtype == np.float32


def test_to_model_input_honours_target_size() -> None:
    array = to_model_input(images.photo_like(96, 64), target_size=(100, 50))
    assert array.shape == (100, 50, 3)  # (height, width, channels)


def test_to_model_input_refuses_non_rgb_images() -> None:
    with pytest.raises(ValueError, match="RGB"):
        to_model_input(images.half_transparent_rgba())


def test_module_does_not_import_tensorflow_or_keras() -> None:
    code = (
        "import sys, search.featurize.preprocess; "
        "loaded = {'tensorflow', 'keras'} & set(sys.modules); "
        "sys.exit(f'imported {loaded}' if loaded else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------
# Odd inputs that must be accepted

ACCEPTED_INPUTS: dict[str, Callable[[], bytes]] = {
    "exif-rotated-jpeg": lambda: images.with_orientation(images.photo_like(), 6, "JPEG"),
    "transparent-png": images.transparent_png,
    "transparent-webp": images.transparent_webp,
    "palette-png-transparency-key": images.palette_png_with_transparency_key,
    "grey-alpha-png": images.grey_alpha_png,
    "palette-png": lambda: images.encode(images.photo_like().quantize(16), "PNG"),
    "grey-png": lambda: images.encode(images.photo_like().convert("L"), "PNG"),
    "bilevel-png": lambda: images.encode(images.photo_like().convert("1"), "PNG"),
    "cmyk-jpeg": images.cmyk_jpeg,
    "16-bit-png": images.sixteen_bit_grey_png,
    "lossy-webp": lambda: images.encode(images.photo_like(), "WEBP", quality=80),
    "animated-gif": lambda: images.animated("GIF", 500),
    "animated-webp": lambda: images.animated("WEBP", 3),
    "animated-png": lambda: images.animated("PNG", 3),
    "mpo": lambda: images.mpo(images.photo_like()),
    "bmp": lambda: images.encode(images.photo_like(), "BMP"),
    "tiff": lambda: images.encode(images.photo_like(), "TIFF"),
    "1x1": lambda: images.encode(images.solid("RGB", (1, 1), images.RED), "PNG"),
    "1x10000": lambda: images.encode(images.solid("RGB", (1, 10000), images.RED), "PNG"),
    "10000x1": lambda: images.encode(images.solid("RGB", (10000, 1), images.RED), "PNG"),
}


@pytest.mark.parametrize("make", ACCEPTED_INPUTS.values(), ids=ACCEPTED_INPUTS.keys())
def test_odd_inputs_become_model_input(make: Callable[[], bytes]) -> None:
    data = make()
    assert_model_input(preprocess_image(data))
    rgb = load_rgb(data)
    assert rgb.mode == "RGB"
    info = inspect_image(data)
    assert (info.width, info.height) == rgb.size


@pytest.mark.parametrize(
    ("image_format", "make"),
    [
        ("JPEG", lambda: images.encode(images.photo_like(), "JPEG")),
        ("PNG", images.transparent_png),
        ("WEBP", images.transparent_webp),
        ("GIF", lambda: images.animated("GIF", 2)),
        ("BMP", lambda: images.encode(images.photo_like(), "BMP")),
        ("TIFF", lambda: images.encode(images.photo_like(), "TIFF")),
        ("MPO", lambda: images.mpo(images.photo_like())),
    ],
)
def test_inspect_image_names_the_format(image_format: str, make: Callable[[], bytes]) -> None:
    assert inspect_image(make()).format == image_format


@pytest.mark.parametrize(
    ("make", "opaque_rgb"),
    [
        (images.transparent_png, images.RED),
        (images.transparent_webp, images.RED),
        (images.palette_png_with_transparency_key, images.RED),
        (images.grey_alpha_png, (100, 100, 100)),
    ],
    ids=["rgba-png", "rgba-webp", "palette-key-png", "grey-alpha-png"],
)
def test_transparent_pixels_come_out_white(
    make: Callable[[], bytes], opaque_rgb: tuple[int, int, int]
) -> None:
    array = preprocess_image(make())
    # The left half of each 40-pixel-wide source is transparent; NEAREST maps source column
    # 19 to output columns up to 111 and column 20 from 112 on.
    assert (array[:, :110] == WHITE_INPUT).all()
    assert (array[:, 114:] == bgr_after_preprocessing(opaque_rgb)).all()


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_losslessly(orientation: int) -> None:
    upright = images.photo_like(96, 64)
    data = images.with_orientation(upright, orientation, "PNG")
    assert np.array_equal(preprocess_image(data), to_model_input(upright))
    assert load_rgb(data).size == upright.size
    assert inspect_image(data) == ImageInfo(format="PNG", width=96, height=64, frames=1)


def test_exif_rotated_jpeg_is_turned_upright() -> None:
    upright = images.photo_like(96, 64)
    data = images.with_orientation(upright, 6, "JPEG")
    assert inspect_image(data) == ImageInfo(format="JPEG", width=96, height=64, frames=1)

    # JPEG loss rules out comparing with the upright source exactly, so compare with the
    # stored (decoded) pixels turned by hand, which is lossless...
    with Image.open(io.BytesIO(data)) as stored:
        by_hand = stored.convert("RGB").transpose(Image.Transpose.ROTATE_270)
    ours = preprocess_image(data)
    assert np.array_equal(ours, to_model_input(by_hand))
    # ...and check that this is the right way up: near the source, far from it upside down.
    near = np.abs(ours - to_model_input(upright)).mean()
    upside_down = upright.transpose(Image.Transpose.ROTATE_180)
    far = np.abs(ours - to_model_input(upside_down)).mean()
    assert near < 5 < far


@pytest.mark.parametrize(
    "data",
    [
        images.sixteen_bit_grey_png(),
        images.encode(Image.new("I;16B", (16, 16), images.MID_GREY_16_BIT), "TIFF"),
        images.encode(Image.new("I", (16, 16), images.MID_GREY_16_BIT), "TIFF"),
    ],
    ids=["png-I;16", "tiff-I;16B", "tiff-I"],
)
def test_sixteen_bit_mid_grey_stays_mid_grey(data: bytes) -> None:
    # Pillow's own convert("L") (and so Keras) clips every value above 255 to white.
    assert (preprocess_image(data) == bgr_after_preprocessing((128, 128, 128))).all()


def test_sixteen_bit_gradient_spans_black_to_white() -> None:
    grey = np.asarray(load_rgb(images.sixteen_bit_gradient_png()))[0, :, 0]
    assert grey[0] == 0
    assert grey[-1] == 255
    assert (np.diff(grey.astype(int)) >= 0).all()
    assert 126 <= grey[128] <= 129


def test_sixteen_bit_transparency_key_comes_out_white() -> None:
    data = images.sixteen_bit_grey_png(0, transparency=0)
    assert (preprocess_image(data) == WHITE_INPUT).all()


@pytest.mark.parametrize(("image_format", "frames"), [("GIF", 500), ("WEBP", 3), ("PNG", 3)])
def test_animations_use_their_first_frame(image_format: str, frames: int) -> None:
    data = images.animated(image_format, frames)
    assert inspect_image(data).frames == frames
    assert (preprocess_image(data) == RED_INPUT).all()


def test_cmyk_jpeg_comes_out_in_the_right_colour() -> None:
    array = preprocess_image(images.cmyk_jpeg((0, 255, 255, 0)))
    assert np.abs(array - RED_INPUT).max() <= 3  # JPEG loss only


def test_single_pixel_fills_the_whole_input() -> None:
    data = images.encode(images.solid("RGB", (1, 1), images.RED), "PNG")
    assert (preprocess_image(data) == RED_INPUT).all()


# ---------------------------------------------------------------------------------------------
# Inputs that must be refused


def _photo_jpeg() -> bytes:
    return images.encode(images.photo_like(256, 256), "JPEG", quality=90)


REFUSED_INPUTS: dict[str, tuple[Callable[[], bytes], str]] = {
    "text-named-jpg": (images.plain_text, "not a supported image"),
    "pdf": (images.minimal_pdf, "PDF"),
    "elf-named-jpg": (images.elf_executable, "not a supported image"),
    "heic": (images.heic_header, "HEIC"),
    "ico": (lambda: images.encode(images.photo_like(32, 32), "ICO"), "not a supported image"),
    "zero-bytes": (lambda: b"", "empty"),
    "truncated-jpeg": (lambda: images.truncated(_photo_jpeg()), "damaged"),
    "png-20000x20000": (lambda: images.huge_black_png(20000, 20000), "too large"),
    "jpeg-12000x12000": (lambda: images.jpeg_declaring_size(12000, 12000), "12000x12000"),
    "webp-9999x9999": (lambda: images.webp_declaring_size(9999, 9999), "9999x9999"),
    "over-max-bytes": (lambda: b"\xff\xd8\xff" + bytes(DEFAULT_MAX_BYTES), "limit is 20 MB"),
}


@pytest.mark.parametrize(("make", "fragment"), REFUSED_INPUTS.values(), ids=REFUSED_INPUTS.keys())
def test_unusable_inputs_are_refused_with_a_clear_message(
    make: Callable[[], bytes], fragment: str
) -> None:
    data = make()
    assert_refused(lambda: preprocess_image(data), fragment)
    assert_refused(lambda: load_rgb(data), fragment)


@pytest.mark.parametrize("name", [name for name in REFUSED_INPUTS if name != "truncated-jpeg"])
def test_header_problems_are_found_without_decoding(name: str) -> None:
    make, fragment = REFUSED_INPUTS[name]
    data = make()
    assert_refused(lambda: inspect_image(data), fragment)


@pytest.mark.parametrize(
    "data",
    [
        images.truncated(images.encode(images.photo_like(256, 256), "JPEG")),
        images.truncated(images.encode(images.photo_like(256, 256), "PNG")),
    ],
    ids=["jpeg", "png"],
)
def test_truncated_files_pass_the_header_check_but_fail_to_decode(data: bytes) -> None:
    assert inspect_image(data).width == 256  # the header is intact
    assert_refused(lambda: load_rgb(data), "damaged")


def test_pixel_limit_is_checked_before_decoding() -> None:
    data = images.jpeg_declaring_size(3000, 3000)
    # Decoded, this file fails as truncated...
    assert_refused(lambda: load_rgb(data), "damaged")
    # ...so a size message under a lower limit means nothing was decoded.
    message = assert_refused(lambda: load_rgb(data, max_pixels=1_000_000), "too large")
    assert message == "The image is too large (3000x3000 pixels); the limit is 1 megapixels."


def test_webp_canvas_is_checked_before_pillow_opens_it() -> None:
    # Pillow's WebP opener allocates the canvas, so the size must be read before opening.
    # With only the 30-byte header left, opening fails; a size message shows it never ran.
    assert_refused(lambda: inspect_image(images.webp_declaring_size(100, 100)[:30]), "damaged")
    header_only = images.webp_declaring_size(9999, 9999)[:30]
    assert_refused(lambda: inspect_image(header_only), "too large (9999x9999 pixels)")


def test_pillow_decompression_bomb_warning_does_not_leak() -> None:
    data = images.jpeg_declaring_size(12000, 12000)  # over Pillow's 89 MP warning threshold
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert_refused(lambda: inspect_image(data), "too large")
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_pillow_hard_limit_still_applies_when_ours_is_raised() -> None:
    data = images.huge_black_png(20000, 20000)  # over 2x Pillow's limit: Pillow itself raises
    assert_refused(lambda: inspect_image(data, max_pixels=10**9), "too large")


def test_a_48_megapixel_photo_is_within_the_default_limit() -> None:
    data = images.jpeg_declaring_size(8000, 6000)
    assert DEFAULT_MAX_PIXELS >= 8000 * 6000
    assert inspect_image(data).width == 8000


def test_byte_limit_is_inclusive_and_configurable() -> None:
    data = images.encode(images.photo_like(), "PNG")
    assert inspect_image(data, max_bytes=len(data)).format == "PNG"
    assert_refused(lambda: inspect_image(data, max_bytes=len(data) - 1), "too large")
    assert_refused(lambda: inspect_image(data, max_bytes=1000), "the limit is 1000 bytes")


def test_byte_limit_message_names_the_default_limit() -> None:
    data = b"\xff\xd8\xff" + bytes(DEFAULT_MAX_BYTES)
    assert_refused(lambda: inspect_image(data), "too large; the limit is 20 MB")
