"""Intensity windows: HU -> [0, 1] channels (linear clipped, or the sigmoid of the seed paper).

Sigmoid window (Lee et al. 2018, seed paper eq. 1), x in HU, window level WL and width WW::

    F(x) = U / (1 + exp(-(W x + b))),  W = (2 / WW) ln(U / eps - 1),  b = (-2 WL / WW) ln(U / eps - 1)

so F(WL - WW/2) = eps and F(WL + WW/2) = U - eps; values outside the window are squashed, not
clipped. It is evaluated as ``U/2 * (1 + tanh(k (x - WL)))`` with ``k = ln(U/eps - 1) / WW``
(the same function, without overflow for the -3024 HU of padding).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import numpy as np

from triage.errors import ImagingError

LOGGER = logging.getLogger(__name__)

#: (level, width) in HU of the three channels, in channel order.
WINDOWS: Mapping[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (50.0, 130.0),
    "bone": (600.0, 2800.0),
}

#: Default sigmoid parameters of the paper.
UPPER = 1.0
EPSILON = 1.0 / 255.0

WINDOW_MODES: tuple[str, ...] = ("sigmoid", "linear")


def _check_window(level: float, width: float) -> None:
    if not (math.isfinite(level) and math.isfinite(width)) or width <= 0:
        raise ImagingError(f"window (level={level!r}, width={width!r}) is invalid; width must be a positive number")


def sigmoid_window(
    hu: np.ndarray, level: float, width: float, upper: float = UPPER, eps: float = EPSILON
) -> np.ndarray:
    """Return the sigmoid window of ``hu`` as float32 in [0, ``upper``].

    Parameters
    ----------
    hu : numpy.ndarray
        Hounsfield units, any shape.
    level, width : float
        Window level WL and width WW in HU (width > 0).
    upper : float
        U, the upper limit of the output (1 by default).
    eps : float
        The margin: the output is ``eps`` at WL - WW/2 and ``upper - eps`` at WL + WW/2
        (0 < eps < upper / 2).

    Returns
    -------
    numpy.ndarray
        float32 array of the shape of ``hu``.
    """
    _check_window(level, width)
    if not (upper > 0 and 0 < eps < upper / 2):
        raise ImagingError(f"sigmoid parameters upper={upper!r}, eps={eps!r} are invalid; need 0 < eps < upper/2")
    out = np.empty(np.shape(hu), dtype=np.float32)
    _sigmoid_into(np.asarray(hu), level, width, upper, eps, out)
    return out


def _sigmoid_into(hu: np.ndarray, level: float, width: float, upper: float, eps: float, out: np.ndarray) -> None:
    k = math.log(upper / eps - 1.0) / width
    np.subtract(hu, np.float32(level), out=out, dtype=np.float32)
    out *= np.float32(k)
    np.tanh(out, out=out)
    out += np.float32(1.0)
    out *= np.float32(upper / 2.0)


def _linear_into(hu: np.ndarray, level: float, width: float, out: np.ndarray) -> None:
    np.subtract(hu, np.float32(level - width / 2.0), out=out, dtype=np.float32)
    out *= np.float32(1.0 / width)
    np.clip(out, np.float32(0.0), np.float32(1.0), out=out)


def sigmoid_reference(
    hu: np.ndarray, level: float, width: float, upper: float = UPPER, eps: float = EPSILON
) -> np.ndarray:
    """The formula of the paper written literally (float64); for tests and benchmarks."""
    scale = math.log(upper / eps - 1.0)
    w = 2.0 / width * scale
    b = -2.0 * level / width * scale
    with np.errstate(over="ignore"):
        return upper / (1.0 + np.exp(-(w * np.asarray(hu, dtype=np.float64) + b)))


def linear_window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """Return the linear window of ``hu``: 0 below WL - WW/2, 1 above WL + WW/2, linear between.

    Parameters
    ----------
    hu : numpy.ndarray
        Hounsfield units, any shape.
    level, width : float
        Window level and width in HU (width > 0).

    Returns
    -------
    numpy.ndarray
        float32 array in [0, 1] of the shape of ``hu``.
    """
    _check_window(level, width)
    out = np.empty(np.shape(hu), dtype=np.float32)
    _linear_into(np.asarray(hu), level, width, out)
    return out


def window_stack(
    hu: np.ndarray,
    mode: str = "sigmoid",
    windows: Mapping[str, tuple[float, float]] = WINDOWS,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Return the three windows of ``hu`` (H, W) as channels (3, H, W), float32 in [0, 1].

    Parameters
    ----------
    hu : numpy.ndarray
        2-D Hounsfield units.
    mode : {"sigmoid", "linear"}
        Window function.
    windows : mapping
        name -> (level, width), in channel order (default :data:`WINDOWS`).
    out : numpy.ndarray, optional
        A float32 (len(windows), H, W) array to write into.

    Returns
    -------
    numpy.ndarray
        float32 (len(windows), H, W).
    """
    if mode not in WINDOW_MODES:
        raise ImagingError(f"windowing mode {mode!r} is unknown; expected one of {', '.join(WINDOW_MODES)}")
    hu = np.asarray(hu)
    if hu.ndim != 2:
        raise ImagingError(f"window_stack needs a 2-D HU image, got shape {hu.shape}")
    if out is None:
        out = np.empty((len(windows), *hu.shape), dtype=np.float32)
    for channel, (level, width) in enumerate(windows.values()):
        _check_window(level, width)
        if mode == "sigmoid":
            _sigmoid_into(hu, level, width, UPPER, EPSILON, out[channel])
        else:
            _linear_into(hu, level, width, out[channel])
    return out


def window_fill(
    mode: str = "sigmoid", hu: float = -1024.0, windows: Mapping[str, tuple[float, float]] = WINDOWS
) -> list[float]:
    """The value of each channel for a constant ``hu`` (what air becomes), for padding stacks."""
    stack = window_stack(np.full((1, 1), hu, dtype=np.float32), mode, windows)
    return [float(v) for v in stack[:, 0, 0]]
