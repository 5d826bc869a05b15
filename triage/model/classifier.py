"""The two-stage classifier the worker loads once per process: arrays in, probabilities out."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from triage.errors import ModelError
from triage.model.cam import class_activation_map
from triage.model.directory import load_model_directory
from triage.model.runtime import OnnxRunner, Runner, TorchRunner, check_agreement, resolve_device

LOGGER = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx")


def compose_probabilities(p_any: np.ndarray, p_subtype_given_ich: np.ndarray, ran: np.ndarray) -> np.ndarray:
    """Combine the two stages into the six reported probabilities (DESIGN.md section 6).

    Parameters
    ----------
    p_any
        (N,) stage-1 P(any ICH).
    p_subtype_given_ich
        (M, 5) stage-2 P(subtype | ICH) for the M rows where ``ran`` is true, in row order.
    ran
        (N,) boolean: stage 2 ran on that row (P(any) at or above the detection threshold).

    Returns
    -------
    numpy.ndarray
        (N, 6) float32: column 0 is P(any); columns 1..5 are P(any) * P(subtype | ICH) where stage 2
        ran and 0 elsewhere, so no subtype is ever reported without a bleed.
    """
    p_any = np.asarray(p_any, dtype=np.float32)
    ran = np.asarray(ran, dtype=bool)
    if p_subtype_given_ich.shape != (int(ran.sum()), 5):
        raise ValueError(f"stage-2 output has shape {p_subtype_given_ich.shape}, expected ({int(ran.sum())}, 5)")
    out = np.zeros((len(p_any), 6), dtype=np.float32)
    out[:, 0] = p_any
    out[ran, 1:] = p_any[ran, None] * p_subtype_given_ich
    return out


class Classifier:
    """Two-stage ICH classifier loaded from a model directory.

    Parameters
    ----------
    model_dir
        A directory written by :func:`triage.model.save_model_directory` (checked on load).
    device
        ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    threads
        CPU threads for torch and ONNX Runtime's intra-op pool; 0 keeps the library default.
    batch_size
        Largest batch sent through a network at once.
    backend
        ``torch`` (eager, the reference) or ``onnx`` (ONNX Runtime, the fastest on CPU; exported in
        memory at load and checked against torch within 1e-4).

    Notes
    -----
    Calls are serialised by a lock: safe to use from one worker thread at a time (or several).
    """

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "auto",
        threads: int = 0,
        batch_size: int = 16,
        backend: str = "torch",
    ) -> None:
        if backend not in BACKENDS:
            raise ModelError(f"unknown inference backend {backend!r}: expected one of {BACKENDS}")
        if batch_size < 1:
            raise ModelError(f"batch size {batch_size!r} must be at least 1")
        self.model_dir = Path(model_dir)
        self.metadata, networks = load_model_directory(self.model_dir)
        self.device = resolve_device(device)
        self.backend = backend
        self.batch_size = batch_size
        if threads > 0:
            torch.set_num_threads(threads)
        self._lock = threading.Lock()
        self._torch = {stage: TorchRunner(net, self.device, batch_size) for stage, net in networks.items()}
        self._runners: dict[str, Runner] = dict(self._torch)
        if backend == "onnx":
            self._runners = {stage: self._onnx(stage, networks[stage], threads) for stage in networks}
        LOGGER.info(
            "loaded model %s (%s, %dpx, %s windowing) on %s with backend %s",
            self.version, self.backbone, self.image_size, self.windowing, self.device, backend,
        )

    def _onnx(self, stage: str, network: torch.nn.Module, threads: int) -> Runner:
        runner = OnnxRunner(
            network, self.image_size, threads=threads, batch_size=self.batch_size, device=self.device
        )
        if self.device.type == "cpu":
            check_agreement(self._torch[stage], runner, self.image_size, stage)
        return runner

    # -- metadata ---------------------------------------------------------------------------------

    @property
    def version(self) -> str:
        """Stable identifier: model name plus a short sha256 of both weights files."""
        return self.metadata.version

    @property
    def image_size(self) -> int:
        """Side of the square input the networks expect."""
        return self.metadata.image_size

    @property
    def windowing(self) -> str:
        """``sigmoid`` or ``linear``: how the preprocessing must window the HU values."""
        return self.metadata.windowing

    @property
    def class_names(self) -> tuple[str, ...]:
        """The six output names, ``any`` first."""
        return self.metadata.class_names

    @property
    def default_thresholds(self) -> dict[str, float]:
        """Per-class operating thresholds shipped with the model."""
        return dict(self.metadata.thresholds)

    @property
    def detection_threshold(self) -> float:
        """Stage 2 runs on slices whose P(any) is at or above this value."""
        return self.metadata.detection_threshold

    @property
    def backbone(self) -> str:
        """torchvision backbone of both stages."""
        return self.metadata.backbone

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary (for health pages and logs)."""
        return {
            "version": self.version,
            "name": self.metadata.name,
            "backbone": self.backbone,
            "image_size": self.image_size,
            "windowing": self.windowing,
            "input_pool": self.metadata.input_pool,
            "backend": self.backend,
            "device": str(self.device),
            "detection_threshold": self.detection_threshold,
        }

    # -- inference --------------------------------------------------------------------------------

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        expected = (3, self.image_size, self.image_size)
        if x.ndim != 4 or x.shape[1:] != expected:
            raise ModelError(f"input has shape {x.shape}, expected (N, {', '.join(map(str, expected))})")
        if not np.issubdtype(x.dtype, np.floating):
            raise ModelError(f"input has dtype {x.dtype}, expected float32")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise ModelError("input holds NaN or infinite values")
        return x

    def detect(self, x: np.ndarray) -> np.ndarray:
        """Stage 1: P(any ICH) per slice, shape (N,)."""
        x = self._check(x)
        if len(x) == 0:
            return np.zeros(0, dtype=np.float32)
        with self._lock:
            return self._runners["detect"](x)[:, 0]

    def subtype(self, x: np.ndarray) -> np.ndarray:
        """Stage 2: P(subtype | ICH) per slice, shape (N, 5), for slices already called positive."""
        x = self._check(x)
        if len(x) == 0:
            return np.zeros((0, 5), dtype=np.float32)
        with self._lock:
            return self._runners["subtype"](x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Both stages composed: (N, 6) with P(any) and P(any) * P(subtype | ICH), see :func:`compose_probabilities`."""
        x = self._check(x)
        p_any = self.detect(x)
        ran = p_any >= self.detection_threshold
        return compose_probabilities(p_any, self.subtype(x[ran]), ran)

    def activation_map(self, x_one: np.ndarray) -> np.ndarray:
        """Class activation map of stage 1 for one slice (3, S, S): (S, S) float32 in [0, 1]."""
        x = self._check(np.asarray(x_one)[None])[0]
        with self._lock:
            return class_activation_map(self._torch["detect"].network, x, self.device)
