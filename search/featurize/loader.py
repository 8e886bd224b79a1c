"""The feature model a process serves: backbone name -> Featurizer.

With MODEL_RUNTIME=auto (the default) the runtime is the one measured for this CPU and
recorded beside the model (search.featurize.choice, search.featurize.record): once that record
and the exported files exist, the model is served from them without importing TensorFlow
(search.featurize.served). The first time (no model, no record, another CPU, or a record made
before the catalogue had enough photos), Keras builds and exports the model and every runtime
is measured on the shop's photos, in a child process (search/featurize/child.py), so the
serving process never imports TensorFlow. A one-shot command that only adds vectors (`catalog
import`, built with `measure_first=False`) does not wait for that measuring: it featurises on
the provisional runtime and says so, and `lookalike model build` afterwards measures and
featurises the catalogue again on the chosen runtime (search/refeaturizing.py). An explicit
MODEL_RUNTIME skips the measuring ("keras" and "keras-xla" serve with TensorFlow). A serving
process never exports or quantises: a missing file of the recorded runtime is served as
float32 OpenVINO until `lookalike model build` (`build`) rebuilds it; with nothing exported at
all, the child process exports.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from search.errors import InvalidImageError, ModelUnavailableError
from search.featurize.backbones import BackboneSpec
from search.featurize.choice import (
    MIN_BENCH_SECONDS,
    MIN_CALIBRATION_PHOTOS,
    choose_runtime,
    default_candidates,
    probe_images,
    provisional_decision,
    split_photos,
)
from search.featurize.featurizer import Featurizer
from search.featurize.files import ModelFiles, backbone_spec, cached_model_path
from search.featurize.preprocess import preprocess_image
from search.featurize.record import RuntimeDecision, cpu_signature, read_decision, write_decision
from search.featurize.served import SERVED_RUNTIMES, load_served, runtime_file

if TYPE_CHECKING:
    from search.featurize.runtimes.keras import KerasExtractor

__all__ = ["CALIBRATION_PHOTOS", "ModelLoader"]

log = logging.getLogger(__name__)

# At most this many of the shop's photos (spread over the catalogue) calibrate int8 and run
# the gate: enough for stable figures, few enough that measuring takes about a minute.
CALIBRATION_PHOTOS = 96


@contextlib.contextmanager
def _exclusive(lock_path: Path, busy: Callable[[], None] | None = None) -> Iterator[None]:
    """An advisory lock on `lock_path` (created if needed) between processes of this machine;
    the kernel releases it if the holder dies. `busy()` is called before waiting when another
    process holds it."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if busy is not None:
                busy()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _say_waiting(
    spec: BackboneSpec, files: ModelFiles, doing: str, awaited: str
) -> Callable[[], None]:
    """The `busy` of _exclusive: one line saying this process waits for another's work."""

    def busy() -> None:
        log.warning(
            "another process is %s (%s) on this CPU: waiting for %s (%s)",
            doing,
            spec.model_name,
            awaited,
            files.decision.with_suffix(".lock"),
        )

    return busy


class ModelLoader:
    """Callable: backbone name -> the featurizer this process serves (the engine's
    `featurizer_provider`). `calibration_photos(n)`: up to n of the shop's catalogue photos
    (encoded image bytes), read only when a runtime has to be chosen."""

    def __init__(
        self,
        *,
        models_dir: Path,
        weights: str,
        seed: int,
        runtime: str = "auto",
        calibration_photos: Callable[[int], Sequence[bytes]] | None = None,
        batch_size: int = 32,
        progress: Callable[[str], None] | None = None,
        calibration_count: int = CALIBRATION_PHOTOS,
        bench_seconds: float = MIN_BENCH_SECONDS,
        measure_first: bool = True,
    ) -> None:
        self.models_dir = models_dir
        self.weights = weights
        self.seed = seed
        self.runtime = runtime
        self._calibration_photos = calibration_photos
        self._batch_size = batch_size
        self._progress = progress
        self._calibration_count = calibration_count
        self._bench_seconds = bench_seconds  # per runtime: fewer in tests, noisier figures
        # False (`catalog import`): with no valid record, featurise on the provisional runtime
        # instead of measuring first (about a minute) or waiting for another's measuring.
        self._measure_first = measure_first

    def __call__(self, backbone: str) -> Featurizer:
        spec = backbone_spec(backbone)
        files = self.files(spec)
        runtime = self.runtime
        measuring = runtime == "auto"  # whether the child, if started, measures or exports
        if runtime != "auto":
            self._say_if_refused(spec, files, runtime)
        if runtime == "auto":
            decision = self.current_decision(spec)
            if decision is None and not self._measure_first:
                runtime, measuring = self._provisional_runtime(spec, files), False
            elif decision is None:
                # Several processes starting at once on a new CPU (the bot and the web server,
                # say): one measures (one measuring per model and CPU), the others wait for
                # its record instead of competing for the cores with measurements of their own.
                busy = _say_waiting(spec, files, "measuring its runtimes", "its choice")
                with _exclusive(files.decision.with_suffix(".lock"), busy):
                    decision = self.current_decision(spec) or self._decide_in_child(spec)
            if decision is not None:
                runtime = decision.chosen
        if runtime not in SERVED_RUNTIMES:  # "keras", "keras-xla": asked for, or nothing else runs
            return self.keras(spec, runtime)
        if not any(files.fresh(runtime_file(files, r)) for r in (runtime, "openvino")):
            # Nothing exported yet (a new models folder, a rebuilt model): exported, and with
            # `auto` measured and gated, in the child process; this one never imports TensorFlow.
            busy = _say_waiting(spec, files, "exporting or measuring it", "its files")
            with _exclusive(files.decision.with_suffix(".lock"), busy):
                if not any(files.fresh(runtime_file(files, r)) for r in (runtime, "openvino")):
                    self._run_child(spec, "auto" if measuring else runtime)
            if measuring:
                decision = read_decision(files.decision)
                runtime = decision.chosen if decision is not None else runtime
        served = self._served(spec, files, runtime)
        if served is not None:
            return served
        log.warning("no exported runtime can serve %s here: serving on Keras", spec.model_name)
        return self.keras(spec, "keras")

    def _say_if_refused(self, spec: BackboneSpec, files: ModelFiles, runtime: str) -> None:
        """An explicit MODEL_RUNTIME is the admin's choice and is served as set; when `auto`
        measured it on this CPU and the gate refused it, one line says why."""
        recorded = read_decision(files.decision)
        trial = recorded.trial(runtime) if recorded is not None else None
        if recorded is None or trial is None or trial.refused is None:
            return
        if recorded.cpu == cpu_signature():
            log.warning(
                "%s on %s, as MODEL_RUNTIME asks, though the fidelity gate refused it on this "
                "CPU (%s, measured %s); MODEL_RUNTIME=auto serves %s",
                spec.model_name,
                runtime,
                trial.refused,
                recorded.measured_at[:10],
                recorded.chosen,
            )

    def _provisional_runtime(self, spec: BackboneSpec, files: ModelFiles) -> str:
        """The runtime a `measure_first=False` process featurises on when nothing valid is
        recorded: the recorded choice when its file was exported from this build of the model
        (a record made before the catalogue had enough photos: the catalogue's vectors come
        from it already), else the provisional one (bfloat16 where the CPU has it, else
        float32 OpenVINO). Says so in one line: the vectors are featurised again by `lookalike
        model build` once it has measured."""
        recorded = read_decision(files.decision)
        if recorded is not None and recorded.chosen in SERVED_RUNTIMES:
            stamp_holds = not files.keras.is_file() or recorded.model_stamp == files.model_stamp()
            if stamp_holds and files.fresh(runtime_file(files, recorded.chosen)):
                runtime = recorded.chosen
            else:
                runtime = provisional_decision(files.model_stamp(), self.weights).chosen
        else:
            runtime = provisional_decision(files.model_stamp(), self.weights).chosen
        log.warning(
            "%s: no runtime measured for this CPU and catalogue yet: featurising on %s "
            "without measuring; `lookalike model build` measures the runtimes and featurises "
            "the catalogue again on the chosen one",
            spec.model_name,
            runtime,
        )
        return runtime

    def _served(self, spec: BackboneSpec, files: ModelFiles, runtime: str) -> Featurizer | None:
        """The served model on `runtime`, else on float32 OpenVINO (the same numbers as Keras),
        else None. Never exports or quantises: a serving process imports no TensorFlow and
        runs nothing ungated. A runtime that cannot run here after all (bfloat16 announced by
        the CPU plugin but not compiled under ONEDNN_MAX_CPU_ISA, say, or a file whose output
        is not (n, dim) finite floats) is refused by load_served and the next one tried."""
        for candidate in dict.fromkeys([runtime, "openvino"]):
            path = runtime_file(files, candidate)
            if not files.fresh(path):
                if candidate != "openvino":
                    log.warning(
                        "%s on %s: its file %s is missing or older than the model; serving "
                        "float32 OpenVINO until `lookalike model build` rebuilds it",
                        spec.model_name,
                        candidate,
                        path,
                    )
                continue
            served = load_served(files, spec, candidate)
            if served is not None:
                return served
            log.warning("%s cannot serve %s here", candidate, spec.model_name)
        return None

    def build(self, backbone: str | BackboneSpec, *, measure_again: bool = False) -> Featurizer:
        """`lookalike model build`: the model built and exported, with `auto` its runtime
        measured and gated when it has no valid record here or its file is missing (int8 is
        quantised only inside the measuring, never alone); returns the served model. Imports
        TensorFlow (a command, not a serving process)."""
        spec = backbone_spec(backbone)
        files = self.files(spec)
        if self.runtime == "auto":
            decision = None if measure_again else self.current_decision(spec)
            if decision is not None and not self._exported(files, decision.chosen):
                decision = None  # its file was lost: measured (and gated) again
            if decision is None:
                with _exclusive(files.decision.with_suffix(".lock")):
                    self.decide(spec)
        elif not self._exported(files, self.runtime):
            self.export(spec, self.runtime)
        return self(spec.name)

    @staticmethod
    def _exported(files: ModelFiles, runtime: str) -> bool:
        """Whether `runtime` can be loaded as it is: Keras, or a served runtime whose file is
        there and not older than the model."""
        return runtime not in SERVED_RUNTIMES or files.fresh(runtime_file(files, runtime))

    def files(self, backbone: str | BackboneSpec) -> ModelFiles:
        return ModelFiles(cached_model_path(self.models_dir, self.weights, self.seed, backbone))

    def recorded_decision(self, backbone: str | BackboneSpec) -> RuntimeDecision | None:
        """The decision recorded beside the model, whether or not it is still valid here."""
        return read_decision(self.files(backbone).decision)

    def current_decision(self, backbone: str | BackboneSpec) -> RuntimeDecision | None:
        """The recorded decision when it holds for this CPU, this build of the model and the
        catalogue as it is; None when the runtime must be chosen again."""
        files = self.files(backbone)
        decision = read_decision(files.decision)
        if decision is None:
            return None
        if decision.cpu != cpu_signature():
            log.warning("the runtime was chosen on another CPU (%s): measuring again", decision.cpu)
            return None
        if files.keras.is_file() and decision.model_stamp != files.model_stamp():
            log.warning("the model was rebuilt since its runtime was chosen: measuring again")
            return None
        if decision.photos < MIN_CALIBRATION_PHOTOS and self._has_enough_photos():
            log.warning("the catalogue now has enough photos to calibrate on: measuring again")
            return None
        return decision

    def decide(self, backbone: str | BackboneSpec) -> RuntimeDecision:
        """Build (or load) the Keras model, measure every runtime on the shop's photos,
        record and return the decision. Imports TensorFlow."""
        spec = backbone_spec(backbone)
        files = self.files(spec)
        say = self._progress or log.warning
        reference = self.keras(spec, "keras")
        photos = self._photo_inputs(spec)
        weights = self.weights if self.weights in ("imagenet", "none") else "file"
        if len(photos) < MIN_CALIBRATION_PHOTOS:
            # Nothing of the shop's to measure on yet (a first import): a provisional choice
            # from the CPU's flags, measured once the catalogue has enough photos.
            decision = provisional_decision(files.model_stamp(), weights)
            reference.export_openvino()
        else:
            say(f"measuring {spec.model_name}'s runtimes on this CPU (once, about a minute)")
            # int8 calibrated on a seeded half of the photos, the gate scored on the other.
            calibration, held_out = split_photos(len(photos))
            candidates = default_candidates(reference, files, photos[calibration], calibrated=True)
            decision = choose_runtime(
                reference,
                photos,
                candidates=candidates,
                held_out=held_out,
                model_stamp=files.model_stamp(),
                photos=len(photos),
                weights=weights,
                batch_size=self._batch_size,
                min_seconds=self._bench_seconds,
                progress=self._progress or log.info,
            )
        write_decision(files.decision, decision)
        say(f"{spec.model_name} runs on {decision.summary()}")
        return decision

    def _decide_in_child(self, spec: BackboneSpec) -> RuntimeDecision:
        """`decide` in a child process (search/featurize/child.py): this process, about to
        serve, never imports TensorFlow and does not keep the measuring's memory."""
        self._run_child(spec, "auto")
        decision = read_decision(self.files(spec).decision)
        if decision is None:
            raise ModelUnavailableError(
                f"choosing {spec.model_name}'s runtime recorded nothing; see the log above"
            )
        return decision

    def _run_child(self, spec: BackboneSpec, runtime: str) -> None:
        """search/featurize/child.py: with `auto`, `decide`; with a served runtime, `export`
        it. Raises ModelUnavailableError when the child fails."""
        with tempfile.TemporaryDirectory(prefix="lookalike-calibration-") as folder:
            photos = (
                self._calibration_photos(self._calibration_count)
                if (self._calibration_photos is not None)
                else []
            )
            for number, data in enumerate(photos):
                (Path(folder) / f"{number:05d}").write_bytes(data)
            args = {
                "models_dir": str(self.models_dir),
                "weights": self.weights,
                "seed": self.seed,
                "backbone": spec.name,
                "photos": folder,
                "batch_size": self._batch_size,
                "calibration_count": self._calibration_count,
                "bench_seconds": self._bench_seconds,
                "runtime": runtime,
                "parent": os.getpid(),  # the child dies with this process (child.py)
            }
            child = [sys.executable, "-m", "search.featurize.child", json.dumps(args)]
            done = subprocess.run(child, stdout=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            raise ModelUnavailableError(
                f"building {spec.model_name} and choosing its runtime failed (exit "
                f"{done.returncode}); the reason is in the log just above"
            )

    def export(self, spec: BackboneSpec, runtime: str) -> None:
        """Export what an explicitly chosen served runtime needs (int8: quantised on the
        shop's photos, or generated probes when there are too few). Imports TensorFlow: run
        by `lookalike model build` and the child process, never by a serving process."""
        keras = self.keras(spec, "keras")
        if runtime == "onnxruntime":
            keras.export_onnx()
            return
        xml = keras.export_openvino()
        if runtime == "openvino-int8":
            from search.featurize.quantize import quantize_int8

            photos = self._photo_inputs(spec)
            samples = photos if len(photos) >= MIN_CALIBRATION_PHOTOS else probe_images(spec)
            quantize_int8(xml, self.files(spec).int8_xml, samples)

    def keras(self, backbone: str | BackboneSpec, runtime: str = "keras") -> KerasExtractor:
        """The Keras model (built and cached on first use) with its forward pass on `runtime`
        (float32 Keras by default: the reference). Imports TensorFlow."""
        from search.featurize.runtimes.keras import KerasExtractor

        return KerasExtractor.load(
            models_dir=self.models_dir,
            backbone=backbone_spec(backbone),
            weights=self.weights,
            seed=self.seed,
            runtime=runtime,
        )

    def _has_enough_photos(self) -> bool:
        if self._calibration_photos is None:
            return False
        return len(self._calibration_photos(MIN_CALIBRATION_PHOTOS)) >= MIN_CALIBRATION_PHOTOS

    def _photo_inputs(self, spec: BackboneSpec) -> np.ndarray:
        """(n, H, W, 3) model inputs of up to CALIBRATION_PHOTOS catalogue photos."""
        if self._calibration_photos is None:
            return np.zeros((0, *spec.input_shape), dtype=np.float32)
        inputs = []
        for data in self._calibration_photos(self._calibration_count):
            try:
                inputs.append(
                    preprocess_image(data, size=spec.input_size, preprocessing=spec.preprocessing)
                )
            except InvalidImageError:
                continue  # a damaged file in the media folder: calibrate on the others
        if not inputs:
            return np.zeros((0, *spec.input_shape), dtype=np.float32)
        return np.stack(inputs)
