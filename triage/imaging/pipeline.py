"""Model input of one slice: DICOM -> HU -> crop/pad 448 (-> max-pool 224) -> three windows.

The geometry runs on HU and the windows last: a crop commutes with any per-pixel function and a
max-pool with any non-decreasing one, so this order gives exactly the paper's
"window, stack, crop, pool" result while windowing only the pixels that are kept
(448^2 instead of 512^2, and 224^2 on the 224 path).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom import Dataset
from pydicom.errors import InvalidDicomError

from triage.errors import ImagingError
from triage.imaging.geometry import CROP_SIZE, SOURCE_SIZE, fit_to_size, max_pool2
from triage.imaging.hu import AIR_HU, to_hu
from triage.imaging.windows import WINDOW_MODES, window_stack

LOGGER = logging.getLogger(__name__)

#: The model input sizes of the paper.
IMAGE_SIZES: tuple[int, ...] = (448, 224)


def _check(image_size: int, windowing: str) -> None:
    if image_size not in IMAGE_SIZES:
        raise ImagingError(f"image_size {image_size!r} is not supported; expected 448 or 224")
    if windowing not in WINDOW_MODES:
        raise ImagingError(f"windowing {windowing!r} is unknown; expected one of {', '.join(WINDOW_MODES)}")


def preprocess_hu(hu: np.ndarray, image_size: int = CROP_SIZE, windowing: str = "sigmoid") -> np.ndarray:
    """Return the model input (3, image_size, image_size) float32 of a 2-D HU image.

    Parameters
    ----------
    hu : numpy.ndarray
        Hounsfield units (H, W), e.g. from :func:`triage.imaging.to_hu`.
    image_size : {448, 224}
        448: center crop / pad; 224: the 448 image 2x max-pooled (as the paper).
    windowing : {"sigmoid", "linear"}
        Window function of the brain, subdural and bone channels.
    """
    _check(image_size, windowing)
    fitted = _center_view(hu)
    if fitted is None:
        fitted = fit_to_size(hu, CROP_SIZE, fill=AIR_HU)
    if image_size != CROP_SIZE:
        fitted = max_pool2(fitted)
    return window_stack(fitted, windowing)


def _center_view(hu: np.ndarray) -> np.ndarray | None:
    """The 448 center crop of ``hu`` as a view when it needs neither padding nor resizing."""
    if hu.ndim != 2 or not all(CROP_SIZE <= n <= SOURCE_SIZE for n in hu.shape):
        return None
    top, left = (hu.shape[0] - CROP_SIZE) // 2, (hu.shape[1] - CROP_SIZE) // 2
    return hu[top : top + CROP_SIZE, left : left + CROP_SIZE]


def preprocess(
    ds: Dataset, image_size: int = CROP_SIZE, windowing: str = "sigmoid", frame: int | None = None
) -> np.ndarray:
    """Return the model input (3, image_size, image_size) float32 of one DICOM slice.

    Parameters
    ----------
    ds : pydicom.Dataset
        A CT image (or an Enhanced CT object with ``frame``).
    image_size : {448, 224}
        Output side.
    windowing : {"sigmoid", "linear"}
        Window function.
    frame : int, optional
        Frame of a multi-frame object.

    Raises
    ------
    triage.errors.ImagingError
        Unusable pixel data or parameters.
    """
    _check(image_size, windowing)
    return preprocess_hu(to_hu(ds, frame), image_size, windowing)


def read_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Read one DICOM file, raising :class:`ImagingError` naming the file when it is unusable."""
    try:
        return pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ImagingError(f"cannot read DICOM file {os.fspath(path)!r}: {type(exc).__name__}: {exc}") from exc


def preprocess_file(
    path: str | os.PathLike[str], image_size: int = CROP_SIZE, windowing: str = "sigmoid"
) -> np.ndarray:
    """Read ``path`` and return its model input (3, image_size, image_size) float32.

    Raises
    ------
    triage.errors.ImagingError
        The file is missing, not DICOM, truncated or has no usable pixel data; the message names it.
    """
    _check(image_size, windowing)
    ds = read_dataset(path)
    try:
        return preprocess(ds, image_size, windowing)
    except ImagingError as exc:
        raise ImagingError(f"{Path(path).name}: {exc}") from exc
