"""Batched forward passes of one stage: eager torch (the reference) or an ONNX Runtime session.

Both runners take float32 arrays (N, 3, S, S) and return sigmoid probabilities (N, K) as float32.
The ONNX graph is exported in memory from the same, checksum-verified torch weights when the
classifier loads (nothing is written to the model directory, which may be read-only), and checked
against torch on a probe batch before it is used.
"""

from __future__ import annotations

import copy
import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

import numpy as np
import torch
from torch import nn

from triage.errors import ModelError

LOGGER = logging.getLogger(__name__)

ONNX_OPSET = 17
#: Largest difference in probability allowed between ONNX Runtime and torch on the load-time probe.
ONNX_TOLERANCE = 1e-4


class Runner(Protocol):
    """One stage's forward pass."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (N, K) for a float32 batch (N, 3, S, S)."""
        ...


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cpu``, ``cuda``, ``cuda:N`` checked against the machine."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"unknown device {device!r}: expected auto, cpu, cuda or cuda:N") from exc
    if resolved.type not in ("cpu", "cuda"):
        raise ModelError(f"unsupported device {device!r}: expected auto, cpu, cuda or cuda:N")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(f"device {device!r} was asked for, but CUDA is not available on this machine")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ModelError(f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s)")
    return resolved


def chunks(x: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Consecutive slices of at most ``batch_size`` rows."""
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size]


class TorchRunner:
    """Eager torch: channels-last, ``inference_mode``, float16 autocast on CUDA."""

    def __init__(self, network: nn.Module, device: torch.device, batch_size: int) -> None:
        self.device = device
        self.batch_size = batch_size
        self.network = network.eval().to(device)
        self.network.to(memory_format=torch.channels_last)

    def _autocast(self) -> AbstractContextManager[object]:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return nullcontext()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        outputs = []
        with torch.inference_mode(), self._autocast():
            for part in chunks(x, self.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(part)).to(self.device, non_blocking=True)
                logits = self.network(batch.contiguous(memory_format=torch.channels_last))
                outputs.append(torch.sigmoid(logits.float()).cpu().numpy())
        return np.concatenate(outputs).astype(np.float32, copy=False)


class OnnxRunner:
    """ONNX Runtime session over an in-memory export of the network (sigmoid included)."""

    def __init__(self, network: nn.Module, image_size: int, *, threads: int, batch_size: int, device: torch.device):
        import onnxruntime as ort

        self.batch_size = batch_size
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ModelError("backend 'onnx' on CUDA needs onnxruntime-gpu; use backend 'torch' on this machine")
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(threads, 0)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        graph = export_onnx(network, image_size)
        self.session = ort.InferenceSession(graph, options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        outputs = [
            self.session.run(None, {self.input_name: np.ascontiguousarray(part)})[0]
            for part in chunks(x, self.batch_size)
        ]
        return np.concatenate(outputs).astype(np.float32, copy=False)


def export_onnx(network: nn.Module, image_size: int) -> bytes:
    """The network followed by a sigmoid as an ONNX graph (opset 17, dynamic batch/height/width)."""
    wrapped = nn.Sequential(copy.deepcopy(network).to("cpu"), nn.Sigmoid()).eval()
    buffer = io.BytesIO()
    probe = torch.zeros(1, 3, image_size, image_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped,
            (probe,),
            buffer,  # type: ignore[arg-type]  # the legacy exporter writes to file objects too
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["image"],
            output_names=["probability"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "probability": {0: "batch"}},
        )
    return buffer.getvalue()


def check_agreement(reference: Runner, candidate: Runner, image_size: int, stage: str) -> float:
    """Run both on a fixed random probe batch; raise :class:`ModelError` if they differ by more than 1e-4."""
    probe = np.random.default_rng(0).random((2, 3, image_size, image_size), dtype=np.float32)
    difference = float(np.abs(reference(probe) - candidate(probe)).max())
    if not difference <= ONNX_TOLERANCE:
        raise ModelError(f"stage {stage!r}: ONNX Runtime differs from torch by {difference:.2e} (> {ONNX_TOLERANCE})")
    LOGGER.debug("stage %s: ONNX Runtime agrees with torch within %.1e", stage, difference)
    return difference
