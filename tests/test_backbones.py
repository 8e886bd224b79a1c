"""The Keras backbones: the registry, each model built with random weights on a real photo,
its preprocessing bit-for-bit equal to Keras', and runtimes that fall back instead of failing."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import numpy as np
import numpy.typing as npt
import pytest

from search.errors import ModelUnavailableError
from search.featurize.backbones import (
    BACKBONES,
    DEFAULT_BACKBONE,
    BackboneSpec,
    Preprocessing,
    backbone_of_model_name,
    get_backbone,
)
from search.featurize.preprocess import (
    caffe_preprocess,
    preprocess_image,
    preprocess_pixels,
    resize_to_array,
    to_model_input,
)
from tests import images
from tests.conftest import MODEL_SEED

if TYPE_CHECKING:
    from search.featurize.runtimes.keras import KerasExtractor

REPO_ROOT = Path(__file__).resolve().parents[1]

# The keras.applications module whose preprocess_input goes with each backbone.
KERAS_MODULES = {
    "vgg16": "vgg16",
    "resnet50": "resnet50",
    "inception_v3": "inception_v3",
    "densenet121": "densenet",
    "efficientnet_b0": "efficientnet",
}
# One backbone per preprocessing mode, for the checks that need only the mode.
BACKBONE_OF_MODE = {
    "caffe": "vgg16",
    "tf": "inception_v3",
    "torch": "densenet121",
    "none": "efficientnet_b0",
}


@pytest.fixture(scope="module")
def keras_module() -> Any:
    """keras, imported here: TensorFlow takes seconds to import."""
    return pytest.importorskip("keras")


def keras_preprocess_input(keras: Any, backbone: str, pixels: npt.NDArray[np.float32]) -> Any:
    module = getattr(keras.applications, KERAS_MODULES[backbone])
    return module.preprocess_input(pixels)


def load_extractor(models_dir: Path, backbone: str, runtime: str = "keras") -> KerasExtractor:
    from search.featurize.runtimes.keras import KerasExtractor

    return KerasExtractor.load(
        models_dir=models_dir,
        backbone=backbone,
        weights="none",
        seed=MODEL_SEED,
        runtime=runtime,
    )


@pytest.fixture(scope="module", params=list(BACKBONES))
def built(request: pytest.FixtureRequest, models_dir: Path) -> Iterator[KerasExtractor]:
    """Each backbone with random weights (seed fixed), loaded or built once, on Keras.

    Module scope with one parameter per backbone: pytest runs every test of one backbone
    before building the next, so only one model is held at a time."""
    yield load_extractor(models_dir, request.param)


def photo_input(spec: BackboneSpec, path: Path) -> npt.NDArray[np.float32]:
    """(1, h, w, 3): one real photo prepared for `spec`."""
    data = path.read_bytes()
    return preprocess_image(data, size=spec.input_size, preprocessing=spec.preprocessing)[None]


# ---------------------------------------------------------------------------------------------
# The registry


def test_vgg16_is_the_default_and_keeps_its_stored_name() -> None:
    assert DEFAULT_BACKBONE == "vgg16"
    vgg16 = get_backbone(DEFAULT_BACKBONE)
    assert vgg16.model_name == "vgg16_avgpool"  # vectors already in databases use this name
    assert (vgg16.dim, vgg16.input_size, vgg16.preprocessing) == (512, (224, 224), "caffe")


def test_registry_describes_each_backbone() -> None:
    described = {
        name: (spec.dim, spec.input_size, spec.preprocessing) for name, spec in BACKBONES.items()
    }
    assert described == {
        "vgg16": (512, (224, 224), "caffe"),
        "resnet50": (2048, (224, 224), "caffe"),
        "inception_v3": (2048, (299, 299), "tf"),
        "densenet121": (1024, (224, 224), "torch"),
        "efficientnet_b0": (1280, (224, 224), "none"),
    }
    assert all(spec.name == name for name, spec in BACKBONES.items())


@pytest.mark.parametrize("name", list(BACKBONES))
def test_model_name_leads_back_to_the_backbone(name: str) -> None:
    spec = get_backbone(name)
    assert spec.model_name == f"{name}_avgpool"
    assert backbone_of_model_name(spec.model_name) is spec


def test_backbone_names_ignore_case_and_spaces() -> None:
    assert get_backbone(" ResNet50 ") is BACKBONES["resnet50"]


def test_unknown_backbone_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'nope'") as caught:
        get_backbone("nope")
    for name in BACKBONES:
        assert name in str(caught.value)
    with pytest.raises(ValueError, match="vgg16_avgpool"):
        backbone_of_model_name("vgg16")  # a backbone name is not a stored model name


def test_backbones_module_does_not_import_tensorflow_or_keras() -> None:
    code = (
        "import sys, search.featurize.backbones; "
        "loaded = {'tensorflow', 'keras'} & set(sys.modules); "
        "sys.exit(f'imported {loaded}' if loaded else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------
# Preprocessing: bit-for-bit Keras for every backbone


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_real_photos_match_keras_preprocessing_exactly(
    keras_module: Any, backbone: str, catalog_photos: list[Path]
) -> None:
    keras = keras_module
    spec = get_backbone(backbone)
    for path in catalog_photos[::60]:  # five photos spread over the catalogue
        ours = preprocess_image(
            path.read_bytes(), size=spec.input_size, preprocessing=spec.preprocessing
        )
        pixels = keras.utils.img_to_array(keras.utils.load_img(path, target_size=spec.input_size))
        theirs = keras_preprocess_input(keras, backbone, pixels)
        assert ours.shape == (*spec.input_size, 3)
        assert ours.dtype == np.float32
        assert np.array_equal(ours, theirs), path.name


@pytest.mark.parametrize("mode", list(BACKBONE_OF_MODE))
def test_preprocess_pixels_matches_keras_on_any_floats(keras_module: Any, mode: str) -> None:
    batch = np.random.default_rng(7).uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    untouched = batch.copy()
    ours = preprocess_pixels(batch, mode)  # type: ignore[arg-type]  # str from a dict
    theirs = keras_preprocess_input(keras_module, BACKBONE_OF_MODE[mode], batch.copy())
    assert ours.dtype == np.float32
    assert ours.flags.c_contiguous
    assert np.array_equal(ours, theirs)
    assert np.array_equal(batch, untouched)  # Keras works in place; we do not
    assert ours is not batch


def test_every_preprocessing_mode_is_implemented() -> None:
    assert set(get_args(Preprocessing)) == set(BACKBONE_OF_MODE)
    pixels = np.full((1, 1, 3), 255, dtype=np.float32)
    results = {mode: preprocess_pixels(pixels, mode) for mode in get_args(Preprocessing)}
    assert results["tf"].tolist() == [[[1.0, 1.0, 1.0]]]
    assert results["none"].tolist() == [[[255.0, 255.0, 255.0]]]
    with pytest.raises(ValueError, match=r"unknown preprocessing 'nope'.*caffe, tf, torch, none"):
        preprocess_pixels(pixels, "nope")  # type: ignore[arg-type]


def test_vgg16_defaults_are_unchanged() -> None:
    photo = images.photo_like(96, 64)
    default = to_model_input(photo)
    assert np.array_equal(default, caffe_preprocess(resize_to_array(photo)))
    assert np.array_equal(default, to_model_input(photo, size=(224, 224), preprocessing="caffe"))


def test_target_size_is_still_accepted_as_the_old_name_of_size() -> None:
    photo = images.photo_like(96, 64)
    assert to_model_input(photo, target_size=(299, 299)).shape == (299, 299, 3)
    assert np.array_equal(
        to_model_input(photo, target_size=(299, 299)), to_model_input(photo, size=(299, 299))
    )
    with pytest.raises(ValueError, match="disagree"):
        to_model_input(photo, size=(299, 299), target_size=(224, 224))


def test_preprocess_image_honours_size_and_mode() -> None:
    data = images.encode(images.solid("RGB", (3, 2), images.RED), "PNG")
    array = preprocess_image(data, size=(299, 299), preprocessing="tf")
    assert array.shape == (299, 299, 3)
    expected = np.array(images.RED, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)
    assert (array == expected).all()


# ---------------------------------------------------------------------------------------------
# Each backbone, built with random weights, on a real catalogue photo


def test_vector_size_for_a_real_photo(built: KerasExtractor, catalog_photos: list[Path]) -> None:
    spec = built.spec
    assert (built.model_name, built.dim, built.input_size) == (
        spec.model_name,
        spec.dim,
        spec.input_size,
    )
    assert built.runtime == "keras"
    first = built.embed(photo_input(spec, catalog_photos[0]))
    second = built.embed(photo_input(spec, catalog_photos[1]))
    assert first.shape == (1, spec.dim)
    assert first.dtype == np.float32
    assert np.isfinite(first).all() and np.isfinite(second).all()
    assert np.linalg.norm(first - second) > 0  # the photos are told apart even at random


def test_batch_of_zero_and_wrong_sizes(built: KerasExtractor) -> None:
    height, width = built.input_size
    assert built.embed(np.zeros((0, height, width, 3), dtype=np.float32)).shape == (0, built.dim)
    other = (224, 224) if built.input_size == (299, 299) else (299, 299)
    with pytest.raises(ValueError, match=f"expected \\(n, {height}, {width}, 3\\)"):
        built.embed(np.zeros((1, *other, 3), dtype=np.float32))


def test_cached_under_the_backbones_name_and_reloads_identically(
    built: KerasExtractor, models_dir: Path, catalog_photos: list[Path]
) -> None:
    from search.featurize.runtimes.keras import cached_model_path

    path = cached_model_path(models_dir, "none", MODEL_SEED, built.spec.name)
    assert path.name == f"{built.spec.name}_avgpool-random-seed{MODEL_SEED}.keras"
    assert path.is_file()
    reloaded = load_extractor(models_dir, built.spec.name)
    assert reloaded.source == str(path)
    photo = photo_input(built.spec, catalog_photos[2])
    np.testing.assert_allclose(reloaded.embed(photo), built.embed(photo), rtol=1e-5, atol=1e-6)


def test_vgg16_cache_name_is_unchanged(models_dir: Path) -> None:
    from search.featurize.runtimes.keras import cached_model_path

    assert cached_model_path(models_dir, "none", 1).name == "vgg16_avgpool-random-seed1.keras"
    assert cached_model_path(models_dir, "none", 1, "vgg16") == cached_model_path(
        models_dir, "none", 1
    )


def test_unknown_backbone_cannot_be_loaded(tmp_path: Path) -> None:
    from search.featurize.runtimes.keras import KerasExtractor

    with pytest.raises(ModelUnavailableError, match=r"unknown backbone 'nope'.*efficientnet_b0"):
        KerasExtractor.load(models_dir=tmp_path, backbone="nope", weights="none")
    assert not any(tmp_path.iterdir())


def test_vgg16_extractor_is_the_keras_extractor() -> None:
    from search.featurize.runtimes.keras import KerasExtractor, VGG16Extractor

    assert VGG16Extractor is KerasExtractor


# ---------------------------------------------------------------------------------------------
# Runtimes on a backbone other than VGG16 (EfficientNetB0: the smallest, and the one with
# Normalization constants inside the graph)


def test_openvino_runs_efficientnet_like_keras(
    models_dir: Path, catalog_photos: list[Path]
) -> None:
    pytest.importorskip("openvino")
    keras_model = load_extractor(models_dir, "efficientnet_b0", runtime="keras")
    openvino_model = load_extractor(models_dir, "efficientnet_b0", runtime="openvino")
    assert openvino_model.runtime == "openvino"
    spec = keras_model.spec
    photos = np.concatenate([photo_input(spec, path) for path in catalog_photos[:2]])
    expected = keras_model.embed(photos)
    # float32 OpenVINO: the same numbers as Keras up to summation order.
    np.testing.assert_allclose(
        openvino_model.embed(photos), expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max()
    )
    # The IR is cached beside the Keras file under the backbone's own name.
    assert (models_dir / f"efficientnet_b0_avgpool-random-seed{MODEL_SEED}.openvino.xml").is_file()


@pytest.mark.slow  # ~35 s on 2 cores: the ONNX export comes first
def test_a_runtime_that_cannot_run_a_backbone_falls_back_to_keras(
    models_dir: Path, catalog_photos: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    """ONNX Runtime rejects the EfficientNetB0 export (tf2onnx turns its Normalization
    constants into graph inputs): the extractor must still work, on Keras, and say so."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    keras_model = load_extractor(models_dir, "efficientnet_b0", runtime="keras")
    with caplog.at_level(logging.WARNING, logger="search.featurize.runtimes.keras"):
        onnx_model = load_extractor(models_dir, "efficientnet_b0", runtime="onnxruntime")
    photo = photo_input(keras_model.spec, catalog_photos[0])
    np.testing.assert_allclose(
        onnx_model.embed(photo), keras_model.embed(photo), rtol=1e-4, atol=1e-5
    )
    if onnx_model.runtime == "keras":  # today's tf2onnx: the fallback
        assert any(
            "onnxruntime cannot run efficientnet_b0_avgpool" in record.getMessage()
            for record in caplog.records
        )
    else:  # a tf2onnx that converts it properly
        assert onnx_model.runtime == "onnxruntime"
