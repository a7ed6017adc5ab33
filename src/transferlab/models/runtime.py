"""Pooled backbone features on the CPU by the fastest installed runtime that matches PyTorch.

Measured on this project's 2-core machine (Lite0, 224 px, batch 32, 2 threads; bench/speed.py):
OpenVINO (LATENCY hint) ~137 img/s, ONNX Runtime ~89, PyTorch eager ~21-45.
Each runtime is checked against PyTorch on a fixed batch when it is created; in fp32 one that differs by more
than `PARITY_TOLERANCE` (relative to the largest feature) is not used. A reduced precision (bf16, int8: OpenVINO
only, see `models.precision`) only has to point the same way (`REDUCED_MIN_COSINE`): whether it gives the same
answers is for the accuracy gate on real photos to say.
"""

import functools
import hashlib
import io
import logging
import ctypes
import sys
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from ..files import write_atomic
from .devices import default_threads
from .precision import OPENVINO_HINTS, int8_weight_bits

log = logging.getLogger(__name__)

RUNTIMES = ("openvino", "onnxruntime", "torch")
PARITY_TOLERANCE = 1e-4
REDUCED_MIN_COSINE = 0.95
ONNX_OPSET = 17


class UnknownRuntimeError(ValueError):
    """A runtime name that does not exist; names the ones that do."""


def check_runtime(name: str) -> str:
    """`name` when it is auto or one of `RUNTIMES`, else an `UnknownRuntimeError`."""
    if name != "auto" and name not in RUNTIMES:
        raise UnknownRuntimeError(f"--runtime: expected one of auto, {', '.join(RUNTIMES)} (got {name!r})")
    return name


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """`module` in eval mode inside the block; every submodule gets its own mode back after it."""
    modes = [(sub, sub.training) for sub in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for sub, training in modes:
            sub.training = training


class PooledBackbone(nn.Module):
    """The backbone's features averaged over space: what the head's GAP gives, as (N, D)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(images).mean(dim=(2, 3))


@dataclass(frozen=True)
class FeatureRuntime:
    """`run` maps a normalised float32 batch (N, 3, H, W) to pooled features (N, D) as numpy."""

    name: str
    run: Callable[[np.ndarray], np.ndarray]
    precision: str = "fp32"
    refused: str | None = None
    """Why the reduced precision asked for does not run here (this runtime then runs fp32)."""


def torch_runtime(backbone: nn.Module) -> FeatureRuntime:
    """Pooled features by PyTorch in inference mode."""
    return torch_module_runtime(PooledBackbone(backbone))


def torch_module_runtime(module: nn.Module, device: str = "cpu") -> FeatureRuntime:
    """PyTorch in inference mode and channels_last on `device` (the module is moved there); the module runs in eval
    mode and every submodule keeps its own mode after."""
    module.to(device, memory_format=torch.channels_last)

    def run(images: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(images).to(device)
        if batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with eval_mode(module), torch.inference_mode():
            return module(batch).float().cpu().numpy()

    return FeatureRuntime("torch", run)


def export_onnx(backbone: nn.Module, image_size: int, path: Path) -> Path:
    """Write the pooled backbone as ONNX (dynamic batch), atomically; reused when `path` exists."""
    return export_module_onnx(PooledBackbone(backbone), (3, image_size, image_size), path)


def export_module_onnx(module: nn.Module, input_shape: tuple[int, ...], path: Path) -> Path:
    """Write `module` (one input of `input_shape` per sample) as ONNX with a dynamic batch, atomically; reused when
    `path` exists."""
    if path.is_file():
        return path
    write_atomic(path, onnx_bytes(module, input_shape))
    return path


def onnx_bytes(module: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """`module` as an ONNX model (input "images", output "features", dynamic batch), in memory."""
    buffer = io.BytesIO()
    with eval_mode(module), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (torch.zeros(1, *input_shape),), buffer, input_names=["images"], output_names=["features"],
            dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}}, opset_version=ONNX_OPSET, dynamo=False,
        )
    return buffer.getvalue()


def onnxruntime_runtime(onnx_path: Path, threads: int) -> FeatureRuntime:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    return FeatureRuntime("onnxruntime", lambda images: session.run(None, {"images": images})[0])


SIGNAL_STACK_BYTES = 1 << 20
_signal_stacks: dict[int, Any] = {}
"""Alternate signal stacks given to threads by `roomy_signal_stack`, by thread: kept alive while the thread runs (the
kernel writes signal frames there), freed once it has ended (the loaders start a thread each epoch)."""


class _SignalStack(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def roomy_signal_stack() -> None:
    """Give the calling thread a 1 MiB alternate signal stack when a library left it a smaller one (Linux).

    OpenVINO's bf16 inference leaves a 20 KB one on the thread that ran it; with AMX tiles in use the kernel's
    signal frame alone takes about 12 KB, so a Python signal handler (installed with SA_ONSTACK: SIGINT, the
    SIGCHLD handler of DataLoader workers) overflowed it into the heap and the process died later, at random."""
    if not sys.platform.startswith("linux"):
        return
    libc = _libc()
    current = _SignalStack()
    if libc.sigaltstack(None, ctypes.byref(current)) != 0 or current.ss_flags & SS_DISABLE or current.ss_flags & SS_ONSTACK:
        return
    if current.ss_size >= SIGNAL_STACK_BYTES:
        return
    stack = ctypes.create_string_buffer(SIGNAL_STACK_BYTES)
    if libc.sigaltstack(ctypes.byref(_SignalStack(ctypes.addressof(stack), 0, SIGNAL_STACK_BYTES)), None) == 0:
        running = {thread.ident for thread in threading.enumerate()}
        for ident in [ident for ident in _signal_stacks if ident not in running]:
            del _signal_stacks[ident]
        _signal_stacks[threading.get_ident()] = stack


SS_ONSTACK, SS_DISABLE = 1, 2


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


Calibration = Callable[[], Iterable[np.ndarray]]
"""Normalised float32 batches of training photos, for int8 quantization."""


def openvino_runtime(onnx_path: Path, threads: int, precision: str = "fp32", calibration: Calibration | None = None) -> FeatureRuntime:
    """The ONNX model compiled by OpenVINO for the CPU in `precision` (int8: quantized by NNCF on `calibration`)."""
    import openvino

    model: Any = str(onnx_path)
    if precision == "int8":
        model = quantized_model(onnx_path, calibration)
    compiled = openvino.Core().compile_model(
        model,
        "CPU",
        {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": OPENVINO_HINTS[precision]},
    )
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(images: np.ndarray) -> np.ndarray:
        result = request.infer({0: images})[output].copy()
        roomy_signal_stack()  # cheap (one system call); OpenVINO may have set a small one on this thread
        return result

    return FeatureRuntime("openvino", run, precision)


def quantized_model(onnx_path: Path, calibration: Calibration | None) -> Any:
    """The ONNX model quantized to int8 by NNCF's post-training quantization (mixed preset) on `calibration`, its
    weights in 7 bits where the CPU has no VNNI (`int8_weight_bits`)."""
    if calibration is None:
        raise ValueError("int8 needs calibration photos (training photos); none were given")
    try:
        import nncf
    except ImportError:
        raise ImportError("--inference-precision int8 needs NNCF: pip install 'transferlab[int8]'") from None
    import openvino
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    bits = int8_weight_bits()
    log.info("int8: weights quantized to %d bits%s", bits, "" if bits == 8 else " (no VNNI on this CPU)")
    overflow_fix = OverflowFix.FIRST_LAYER if bits == 8 else OverflowFix.ENABLE
    batches = list(calibration())
    return nncf.quantize(
        openvino.Core().read_model(str(onnx_path)), nncf.Dataset(batches),
        preset=nncf.QuantizationPreset.MIXED, subset_size=len(batches),
        advanced_parameters=AdvancedQuantizationParameters(overflow_fix=overflow_fix),
    )


def model_fingerprint(backbone: nn.Module) -> str:
    """A hash of the backbone's weights: names an exported file so it is never reused for other weights."""
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in backbone.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def relative_error(result: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(result - reference).max() / max(np.abs(reference).max(), 1e-12))


def min_cosine(result: np.ndarray, reference: np.ndarray) -> float:
    """The smallest cosine similarity between matching rows (each flattened)."""
    a, b = result.reshape(len(result), -1), reference.reshape(len(reference), -1)
    return float(((a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)).min())


def feature_runtime(
    backbone: nn.Module,
    image_size: int,
    export_dir: Path,
    prefer: str = "auto",
    threads: int | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    calibration: Calibration | None = None,
) -> FeatureRuntime:
    """Pooled features by the first of `RUNTIMES` (or `prefer`) that is installed and matches PyTorch; on a
    GPU (`device="cuda"`), by PyTorch there."""
    return module_runtime(
        PooledBackbone(backbone), (3, image_size, image_size), export_dir, prefer, threads, device, precision, calibration
    )


def module_runtime(
    module: nn.Module,
    input_shape: tuple[int, ...],
    export_dir: Path,
    prefer: str = "auto",
    threads: int | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    calibration: Calibration | None = None,
) -> FeatureRuntime:
    """`module` (frozen, inference only) run by the first of `RUNTIMES` (or `prefer`) that is installed and
    matches PyTorch on a probe batch within `PARITY_TOLERANCE`; PyTorch otherwise, and always on a GPU.

    A reduced `precision` (bf16, int8) runs in OpenVINO alone; where it cannot, the module runs in fp32 (the
    returned runtime's `precision` says which, and its `refused` why)."""
    check_runtime(prefer)
    threads = threads or default_threads()
    reference_runtime = torch_module_runtime(module, device)

    def fp32_instead(reason: str) -> FeatureRuntime:
        """The module in fp32, saying why not in the reduced `precision`."""
        return replace(module_runtime(module, input_shape, export_dir, prefer, threads, device), refused=reason)

    if prefer == "torch" or device != "cpu":
        if precision != "fp32":
            log.info("%s runs in PyTorch: fp32, not %s", type(module).__name__, precision)
            return replace(reference_runtime, refused=f"PyTorch runs it ({device}, runtime {prefer}), in fp32")
        return reference_runtime
    candidates = RUNTIMES[:-1] if prefer == "auto" else (prefer,)
    if precision != "fp32":
        if "openvino" not in candidates:
            log.warning("%s precision needs OpenVINO, not %s; running fp32", precision, prefer)
            return fp32_instead(f"{precision} needs OpenVINO, not {prefer}")
        candidates = ("openvino",)
    probe = np.random.default_rng(0).standard_normal((2, *input_shape)).astype(np.float32)
    if precision == "int8" and calibration is not None:
        calibration = functools.cache(calibration)
        first = next(iter(calibration()), None)
        probe = probe if first is None else np.ascontiguousarray(first[:4])  # quantized for photos, checked on photos
        calibration = None if first is None else calibration  # no photos: int8 is refused below, fp32 runs
    reference = reference_runtime.run(probe)
    onnx_path = None
    shape = "x".join(map(str, input_shape))
    refused = f"{precision} could not be built"
    for name in candidates:
        try:
            onnx_path = onnx_path or export_module_onnx(module, input_shape, export_dir / f"{model_fingerprint(module)}-{shape}.onnx")
            if name == "openvino":
                runtime = openvino_runtime(onnx_path, threads, precision, calibration)
            else:
                runtime = onnxruntime_runtime(onnx_path, threads)
            output = runtime.run(probe)
        except ImportError as error:
            log.info("%s", error if precision == "int8" else f"{name} is not installed")
            refused = str(error) if precision == "int8" else f"{error.name or name} is not installed"
            continue
        except Exception as exc:  # a runtime that fails to load the model must never stop a run
            log.warning("%s could not run the model (%s); trying the next runtime", name, exc)
            refused = f"{name} could not run the model ({(str(exc).splitlines() or [type(exc).__name__])[0][:200]})"
            continue
        if precision != "fp32":
            cosine = min_cosine(output, reference)
            if cosine >= REDUCED_MIN_COSINE:
                log.info("runtime: %s in %s (cosine %.4f against PyTorch fp32 on a probe)", name, precision, cosine)
                return runtime
            log.warning("%s in %s points elsewhere than PyTorch (cosine %.3f); running fp32", name, precision, cosine)
            return fp32_instead(f"{name} in {precision} points elsewhere than PyTorch fp32 (cosine {cosine:.3f} on a probe, "
                                f"{REDUCED_MIN_COSINE} needed)")
        error = relative_error(output, reference)
        if error <= PARITY_TOLERANCE:
            log.info("runtime: %s (relative error %.1e against PyTorch)", name, error)
            return runtime
        log.warning("%s differs from PyTorch by %.1e (> %.0e); not used", name, error, PARITY_TOLERANCE)
    return fp32_instead(refused) if precision != "fp32" else reference_runtime
