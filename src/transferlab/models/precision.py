"""Inference precision of what runs without gradients: which precisions this CPU runs natively, the `auto`
choice, and the accuracy gate that keeps a reduced precision only when the classifier's answers stay the same.

Measured on a 2-core Intel Xeon with AVX-512 BF16 and AMX (bench/speed.py, Lite0, batch 32/64, 2 threads):
OpenVINO with `INFERENCE_PRECISION_HINT` bf16 ran the backbone 2.2-2.9x faster than f32 (features' cosine
>= 0.999 against f32), int8 (NNCF) about 1.5x; so `auto` prefers bf16, and int8 is used only when asked for. On
CPUs without native bf16 (AVX2-only EPYC) OpenVINO would emulate it, slower than f32: `auto` stays fp32 there.
"""

import functools
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

InferencePrecision = Literal["auto", "fp32", "bf16", "int8"]
PRECISIONS = ("fp32", "bf16", "int8")
OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
"""OpenVINO's INFERENCE_PRECISION_HINT per precision (an int8 model is quantized before; its float parts run f32)."""
AUTO_ORDER = ("bf16", "fp32")
"""`auto`: the first of these that the CPU runs natively. Never int8: slower than bf16 where both exist; where
there is no bf16 it ran 1.36x fp32 (AVX2-only Zen 3), but its accuracy gate refused it on all three of our sets
(woof-mini 97.9 %, woof-bench 98.6 % agreement, clothing-mini's probe), so trying it costs a run for a "no"."""

MIN_AGREEMENT = 0.99
NEAR_TIE = 0.1
"""A photo whose fp32 top-1 probability leads the runner-up by less than this is a near-tie: any perturbation may
flip it (on woof-bench's frozen model, bf16 changed 6 of 500 answers, accuracy 0.932 in both), so agreement is
counted on the other photos, and the accuracy criterion covers the near-ties in aggregate."""
GATE_PHOTOS = 500
"""The gate compares fp32 and the reduced precision on at most this many validation photos (a few seconds)."""
CALIBRATION_PHOTOS = 192
"""Training photos NNCF calibrates int8 on (the issue's measurement used 200)."""

CPU_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "int8": ("avx512_vnni", "avx_vnni", "amx_int8")}
INT8_WEIGHT_BITS_WITHOUT_VNNI = 7
"""Without VNNI (`CPU_FLAGS["int8"]`), int8 kernels multiply with AVX2's vpmaddubsw, which adds pairs of products
into a saturating int16: 8-bit weights overflow it, 7-bit ones do not (NNCF's overflow fix on every layer). Lite0's
features against fp32 on an AVX2-only EPYC (Zen 3), woof-bench: min cosine 0.85 with NNCF's default (the fix on the
first layer only), 0.98 with it on all layers; int8 ran 221 img/s either way, fp32 163."""


class PrecisionError(ValueError):
    """An inference precision that does not exist; names the ones that do."""


def check_precision(name: str) -> str:
    """`name` when it is auto or one of `PRECISIONS`, else a `PrecisionError`."""
    if name != "auto" and name not in PRECISIONS:
        raise PrecisionError(f"--inference-precision: expected auto, {', '.join(PRECISIONS)} (got {name!r})")
    return name


_AVX512_LEVELS = ("avx_vnni", "avx512_vnni", "avx512_bf16")
ISA_CAPS = {
    "SSE41": (), "AVX": (), "AVX2": (), "AVX2_VNNI": ("avx_vnni",), "AVX2_VNNI_2": ("avx_vnni",), "AVX512_CORE": (),
    "AVX512_CORE_VNNI": ("avx512_vnni",), "AVX512_CORE_BF16": ("avx512_vnni", "avx512_bf16"),
    "AVX512_CORE_FP16": _AVX512_LEVELS, "AVX10_1_512": _AVX512_LEVELS,
    "AVX512_CORE_AMX": (*_AVX512_LEVELS, "amx_bf16", "amx_int8"), "AVX10_1_512_AMX": (*_AVX512_LEVELS, "amx_bf16", "amx_int8"),
}
"""oneDNN's ISA caps (ONEDNN_MAX_CPU_ISA) and which of the `CPU_FLAGS` each still lets its kernels use; a cap not
listed here (ALL, DEFAULT, the AMX_FP16 ones) takes nothing away."""
PRECISION_FLAGS = frozenset(flag for flags in CPU_FLAGS.values() for flag in flags)
"""The CPU flags a reduced precision needs, which an ISA cap can take away."""


def isa_cap() -> str | None:
    """oneDNN's ISA cap for this process, upper-case: ONEDNN_MAX_CPU_ISA, else its older name DNNL_MAX_CPU_ISA (an
    empty value counts as unset, as oneDNN reads them)."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return cap.upper() if cap else None


def _cpuinfo_field(name: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The first CPU's `name` line in /proc/cpuinfo (Linux); None where it is not there."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return None


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The first CPU's feature flags (Linux); empty where /proc/cpuinfo is not there."""
    return set((_cpuinfo_field("flags", cpuinfo) or "").split())


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name with its family and model numbers (Linux: a cloud's "AMD EPYC" is Zen 4 or Zen 5 only by
    those), else what `platform` knows of it."""
    import platform

    name = _cpuinfo_field("model name", cpuinfo)
    if not name:
        return platform.processor() or platform.machine()
    family, model = _cpuinfo_field("cpu family", cpuinfo), _cpuinfo_field("model", cpuinfo)
    return f"{name} (family {family}, model {model})" if family and model else name


SPEED_FLAGS = ("avx2", "avx512f", "avx_vnni", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
"""The CPU extensions that change which kernels and precisions run, in the order they came to CPUs."""


def speed_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str] | None:
    """Which of `SPEED_FLAGS` this CPU has; None where it cannot be read (no /proc/cpuinfo: macOS, Windows)."""
    flags = _cpuinfo_field("flags", cpuinfo)
    return None if flags is None else [flag for flag in SPEED_FLAGS if flag in flags.split()]


def usable_cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """`cpu_flags` less those oneDNN's ISA cap keeps its kernels from (`ISA_CAPS`): under ONEDNN_MAX_CPU_ISA=AVX2,
    PyTorch's and OpenVINO's convolutions would only emulate bf16, as on an AVX2-only CPU."""
    flags = cpu_flags(cpuinfo)
    cap = isa_cap()
    if cap in ISA_CAPS:
        flags -= PRECISION_FLAGS - set(ISA_CAPS[cap])
    return flags


@functools.cache
def native_precisions() -> tuple[str, ...]:
    """Precisions this CPU computes natively: fp32 always; bf16 and int8 when the CPU has the instructions and
    OpenVINO reports the capability (it is what runs them)."""
    try:
        import openvino

        capabilities = set(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # not installed, or no CPU plugin: everything runs in fp32
        return ("fp32",)
    flags = usable_cpu_flags()
    native = ["fp32"]
    if "BF16" in capabilities and flags & set(CPU_FLAGS["bf16"]):
        native.append("bf16")
    if "INT8" in capabilities and flags & set(CPU_FLAGS["int8"]):
        native.append("int8")
    return tuple(native)


def int8_weight_bits() -> int:
    """Bits NNCF quantizes weights to for int8 on this CPU: 8 with VNNI, `INT8_WEIGHT_BITS_WITHOUT_VNNI` without."""
    return 8 if usable_cpu_flags() & set(CPU_FLAGS["int8"]) else INT8_WEIGHT_BITS_WITHOUT_VNNI


def candidate_precision(requested: InferencePrecision) -> str:
    """The precision to try: `auto` → the fastest this CPU runs natively (`AUTO_ORDER`), else as requested."""
    if requested != "auto":
        return requested
    native = native_precisions()
    return next(p for p in AUTO_ORDER if p in native)


@dataclass(frozen=True)
class GateResult:
    """fp32 and a reduced precision on the same labelled photos: top-1 agreement and both accuracies."""

    precision: str
    photos: int
    agreement: float
    """Top-1 agreement on the photos that are not near-ties for fp32 (`NEAR_TIE`)."""
    accuracy_fp32: float
    accuracy: float
    standard_error: float
    passed: bool
    near_ties: int = 0
    agreement_all: float = 1.0
    """Top-1 agreement on every photo, near-ties included."""

    @property
    def reason(self) -> str:
        """Why the gate passed or failed, in one line."""
        verdict = "kept" if self.passed else "not used: fp32 instead"
        decisive = self.photos - self.near_ties
        if decisive:
            agreement = (
                f"top-1 agrees with fp32 on {self.agreement:.1%} of {decisive} validation photos, need >= {MIN_AGREEMENT:.0%}; "
                f"{self.agreement_all:.1%} with the {self.near_ties} near-ties"
            )
        else:
            agreement = f"fp32 answers none of the {self.photos} validation photos decisively; top-1 agrees on {self.agreement_all:.1%}"
        return (
            f"{self.precision} {verdict} ({agreement}; accuracy {self.accuracy:.3f} vs {self.accuracy_fp32:.3f}, one standard "
            f"error {self.standard_error:.3f})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reason": self.reason}


def gate(precision: str, logits_fp32: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> GateResult:
    """Keep `precision` when its top-1 agrees with fp32's on >= `MIN_AGREEMENT` of the photos that are not near-ties
    (`NEAR_TIE`), and its accuracy on all of them is within one binomial standard error of fp32's (at least one
    photo's worth, so a perfect fp32 is no trap)."""
    labels = np.asarray(labels)
    top_fp32, top = logits_fp32.argmax(axis=1), logits.argmax(axis=1)
    photos = len(labels)
    if photos == 0:
        return GateResult(precision, 0, 0.0, 0.0, 0.0, 1.0, False)
    shifted = np.exp(logits_fp32 - logits_fp32.max(axis=1, keepdims=True))
    probabilities = np.sort(shifted / shifted.sum(axis=1, keepdims=True), axis=1)
    decisive = probabilities[:, -1] - probabilities[:, -2] >= NEAR_TIE if logits_fp32.shape[1] > 1 else np.ones(photos, bool)
    same = top_fp32 == top
    agreement = float(same[decisive].mean()) if decisive.any() else 1.0
    accuracy_fp32 = float((top_fp32 == labels).mean())
    accuracy = float((top == labels).mean())
    standard_error = max(math.sqrt(accuracy_fp32 * (1 - accuracy_fp32) / photos), 1 / photos)
    passed = agreement >= MIN_AGREEMENT and abs(accuracy - accuracy_fp32) <= standard_error + 1e-12
    return GateResult(precision, photos, agreement, accuracy_fp32, accuracy, standard_error, passed,
                      int((~decisive).sum()), float(same.mean()))


def gate_sample(count: int, seed: int) -> np.ndarray:
    """Indices of the photos the gate looks at: all when they are few, else `GATE_PHOTOS` drawn with `seed`."""
    if count <= GATE_PHOTOS:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, GATE_PHOTOS, replace=False))


def recorded_precision(metrics: dict[str, Any]) -> str:
    """The precision a strategy's gate kept (metrics.json), if this CPU runs it natively; fp32 otherwise."""
    record = metrics.get("inference_precision") or {}
    used = record.get("used", "fp32")
    return used if used in native_precisions() else "fp32"
