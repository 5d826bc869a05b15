"""In-plane geometry of model input: center crop / pad, resize, 2x max-pool (numpy only).

The paper center-crops or pads 512x512 slices to 448x448 and optionally max-pools to 224x224.
Other matrix sizes are first resized (aspect kept) so that the longer side has
``size * 512 / 448`` pixels, then cropped / padded the same way: the field of view then matches
the one the model was trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from triage.errors import ImagingError
from triage.imaging.hu import AIR_HU

LOGGER = logging.getLogger(__name__)

#: The slice size of the paper and the crop it took from it.
SOURCE_SIZE = 512
CROP_SIZE = 448


def full_size(size: int) -> int:
    """The matrix that ``size`` is the center crop of (512 for 448, 256 for 224)."""
    return round(size * SOURCE_SIZE / CROP_SIZE)


def fit_to_size(image: np.ndarray, size: int = CROP_SIZE, fill: float | Sequence[float] = AIR_HU) -> np.ndarray:
    """Center crop / pad ``image`` to ``size`` x ``size``, resizing other matrix sizes first.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W) or (C, H, W).
    size : int
        Output side in pixels.
    fill : float or sequence of float
        Padding value (air by default), or one per channel.

    Returns
    -------
    numpy.ndarray
        float32 (size, size) or (C, size, size); ``image`` itself is never modified.

    Notes
    -----
    Sides between ``size`` and :func:`full_size` (448..512 for 448) are cropped / padded as they
    are; a longer side above that, or below ``size``, is resized (area-weighted linear
    interpolation) to :func:`full_size` first, keeping the aspect ratio.
    """
    if size < 1:
        raise ImagingError(f"size {size!r} is invalid; expected a positive number of pixels")
    arr = np.asarray(image, dtype=np.float32)
    squeeze = arr.ndim == 2
    if squeeze:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] < 1 or arr.shape[2] < 1:
        raise ImagingError(f"image shape {np.shape(image)} is invalid; expected (H, W) or (C, H, W)")
    fills = _fills(fill, arr.shape[0])
    longest = max(arr.shape[1:])
    target = full_size(size)
    if longest > target or longest < size:
        scale = target / longest
        arr = resize(arr, (max(1, round(arr.shape[1] * scale)), max(1, round(arr.shape[2] * scale))))
    out = _crop_pad(arr, size, fills)
    return out[0] if squeeze else out


def _fills(fill: float | Sequence[float], channels: int) -> list[float]:
    if isinstance(fill, int | float | np.floating | np.integer):
        return [float(fill)] * channels
    values = [float(v) for v in fill]
    if len(values) != channels:
        raise ImagingError(f"fill has {len(values)} values for {channels} channels")
    return values


def _crop_pad(arr: np.ndarray, size: int, fills: list[float]) -> np.ndarray:
    channels, height, width = arr.shape
    if height == size and width == size:
        return arr.copy()
    out = np.empty((channels, size, size), dtype=np.float32)
    for channel, value in enumerate(fills):
        out[channel].fill(value)
    src_y, dst_y, n_y = _span(height, size)
    src_x, dst_x, n_x = _span(width, size)
    out[:, dst_y : dst_y + n_y, dst_x : dst_x + n_x] = arr[:, src_y : src_y + n_y, src_x : src_x + n_x]
    return out


def _span(length: int, size: int) -> tuple[int, int, int]:
    """(source start, destination start, count) of a centered crop or pad along one axis."""
    if length >= size:
        return (length - size) // 2, 0, size
    return 0, (size - length) // 2, length


def max_pool2(image: np.ndarray) -> np.ndarray:
    """2x2 max-pool, stride 2, of (H, W) or (C, H, W) with even H and W.

    Notes
    -----
    Every window function is non-decreasing, so windowing commutes with max-pooling:
    ``max_pool2(window(x)) == window(max_pool2(x))`` exactly. :func:`preprocess` uses that to
    window 4x fewer pixels on the 224 path.
    """
    arr = np.asarray(image)
    if arr.shape[-1] % 2 or arr.shape[-2] % 2:
        raise ImagingError(f"max_pool2 needs even height and width, got shape {arr.shape}")
    top = np.maximum(arr[..., 0::2, 0::2], arr[..., 0::2, 1::2])
    bottom = np.maximum(arr[..., 1::2, 0::2], arr[..., 1::2, 1::2])
    return np.maximum(top, bottom, out=top)


def resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize (C, H, W) or (H, W) to ``shape`` with separable linear interpolation.

    When shrinking, the interpolation kernel is widened by the scale factor (area-weighted, like
    Pillow's ``BILINEAR`` with antialiasing), so no pixel is skipped.
    """
    arr = np.asarray(image, dtype=np.float32)
    rows = _weights(arr.shape[-2], shape[0])
    cols = _weights(arr.shape[-1], shape[1])
    out = np.matmul(np.matmul(rows, arr), cols.T)
    return np.ascontiguousarray(out, dtype=np.float32)


@lru_cache(maxsize=32)
def _weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of triangle-filter weights mapping pixel centres onto each other."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    source = np.arange(n_in, dtype=np.float64)
    weights = np.clip(1.0 - np.abs(source[None, :] - centres[:, None]) / support, 0.0, None)
    total = weights.sum(axis=1, keepdims=True)
    total[total == 0] = 1.0
    result = (weights / total).astype(np.float32)
    result.setflags(write=False)
    return result
