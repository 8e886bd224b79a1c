"""The runtime `auto` chose for a model on a CPU, and the measurements behind it, recorded
beside the model (`<model>.runtime.json`) so later starts reuse it without measuring again,
and `lookalike model list` can show it. A record made on another CPU (or for another build
of the model) is not reused: the runtime is chosen again."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from search.featurize.files import write_atomically

__all__ = ["RuntimeDecision", "RuntimeTrial", "cpu_signature", "read_decision", "write_decision"]

log = logging.getLogger(__name__)

# The /proc/cpuinfo flags that change which runtime is fastest (vector width, bf16, int8 dot
# products, AMX). Other flags (microcode features, mitigations) vary between hosts of one
# cloud type without changing the answer.
_RELEVANT_FLAGS = ("avx", "fma", "f16c", "amx", "vnni", "bf16", "avx512")


def _cpuinfo() -> tuple[str, list[str]]:
    """(model name, the relevant ISA flags, sorted) of this machine's first CPU."""
    model = platform.processor() or platform.machine()
    flags: list[str] = []
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model in ("", platform.machine()):
            model = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = sorted(f for f in value.split() if f.startswith(_RELEVANT_FLAGS))
    return model, flags


def cpu_signature() -> str:
    """A short text naming this CPU: model, cores and a digest of its relevant ISA flags, e.g.
    "AMD EPYC 9R14, 2 cores, flags 3f2a9c1b (avx2 avx512_bf16 avx512_vnni ...)"."""
    model, flags = _cpuinfo()
    digest = hashlib.sha256(" ".join(flags).encode()).hexdigest()[:8]
    shown = " ".join(
        f
        for f in flags
        if f
        in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")
    )
    signature = f"{model}, {os.cpu_count() or 1} cores, flags {digest} ({shown or 'no AVX2'})"
    # oneDNN (OpenVINO's and TensorFlow's kernels) can be held below what the CPU has: then the
    # runtimes run as on that smaller CPU, and a choice made either way is not the other's.
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip()
    return f"{signature}, ONEDNN_MAX_CPU_ISA={limit}" if limit else signature


@dataclass(frozen=True, slots=True)
class RuntimeTrial:
    """One runtime measured on this CPU: speed, and fidelity against float32 Keras."""

    runtime: str
    images_per_s: float | None  # None: it could not run (see `refused`)
    cosine: float | None
    top8_overlap: float | None
    refused: str | None  # why `auto` may not choose it; None: it passed the gate
    # cosine and top8_overlap are the gate's (ranking space: search.featurize.fidelity); the
    # same figures on the raw vectors, for reference (None in records made before).
    raw_cosine: float | None = None
    raw_top8_overlap: float | None = None


@dataclass(frozen=True, slots=True)
class RuntimeDecision:
    """What `auto` chose for one model on one CPU."""

    chosen: str
    cpu: str
    model_stamp: str  # search.featurize.files.ModelFiles.model_stamp of the model measured
    photos: int  # the shop's photos the gate and the int8 calibration used (0: not measured)
    weights: str  # "imagenet", "none" (random: the gate measures the mechanism) or a file
    # The held-out split: int8 calibrated on `photos - held_out` of them (chosen with
    # `split_seed`), the gate's figures on the other `held_out` (0: a record made before).
    held_out: int = 0
    split_seed: int = 0
    trials: list[RuntimeTrial] = field(default_factory=list)
    measured_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )

    def trial(self, runtime: str) -> RuntimeTrial | None:
        return next((t for t in self.trials if t.runtime == runtime), None)

    def summary(self) -> str:
        """One line: the choice and its figures, e.g. for `lookalike model list`."""
        chosen = self.trial(self.chosen)
        speed = (
            f", {chosen.images_per_s:.1f} images/s"
            if chosen is not None and chosen.images_per_s is not None
            else ""
        )
        if not self.trials:
            return f"{self.chosen} (provisional: too few catalogue photos to measure on)"
        return f"{self.chosen}{speed} (measured {self.measured_at[:10]} on {self.photos} photos)"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_decision(path: Path, decision: RuntimeDecision) -> None:
    text = json.dumps(asdict(decision), indent=2) + "\n"

    def write(paths: list[Path]) -> None:
        paths[0].write_text(text)

    write_atomically([path], write)


def read_decision(path: Path) -> RuntimeDecision | None:
    """The recorded decision, or None when there is none or it is unreadable."""
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
        trials = [RuntimeTrial(**t) for t in raw.pop("trials", [])]
        return RuntimeDecision(**raw, trials=trials)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        log.warning("runtime record %s is unreadable (%s); measuring again", path, exc)
        return None
