"""Order of the slices of a series: ImagePositionPatient projected on the slice normal.

The normal is the cross product of the row and column direction cosines of
ImageOrientationPatient, so a tilted gantry (oblique orientation, positions moving along y and
z) orders correctly. InstanceNumber is only the fallback when positions or orientation are
missing; the original order breaks the remaining ties.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

LOGGER = logging.getLogger(__name__)


def _vector(value: Any, length: int) -> np.ndarray | None:
    try:
        vec = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if vec.shape != (length,) or not np.all(np.isfinite(vec)):
        return None
    return vec


def _frame_item(ds: Any, frame: int | None, sequence: str, key: str) -> Any:
    """``key`` from the per-frame, then the shared functional group ``sequence`` (Enhanced objects)."""
    groups = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and frame is not None and frame < len(per_frame):
        groups.append(per_frame[frame])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for group in groups:
        items = group.get(sequence)
        if items and items[0].get(key) is not None:
            return items[0].get(key)
    return None


def _position(ds: Any, frame: int | None = None) -> np.ndarray | None:
    value = ds.get("ImagePositionPatient")
    if value is None:
        value = _frame_item(ds, frame if frame is not None else 0, "PlanePositionSequence", "ImagePositionPatient")
    return None if value is None else _vector(value, 3)


def slice_normal(ds: Any, frame: int | None = None) -> np.ndarray | None:
    """Unit normal of the slice plane from ImageOrientationPatient, or None when unusable."""
    value = ds.get("ImageOrientationPatient")
    if value is None:
        index = frame if frame is not None else 0
        value = _frame_item(ds, index, "PlaneOrientationSequence", "ImageOrientationPatient")
    cosines = None if value is None else _vector(value, 6)
    if cosines is None:
        return None
    normal = np.cross(cosines[:3], cosines[3:])
    norm = float(np.linalg.norm(normal))
    if norm < 1e-6:
        return None
    return normal / norm


def z_position(ds: Any, frame: int | None = None) -> float | None:
    """Return the position of the slice along its own normal (mm), or None when unknown.

    Parameters
    ----------
    ds : pydicom.Dataset
        A dataset or header (``stop_before_pixels`` is enough).
    frame : int, optional
        Frame of an Enhanced (multi-frame) object; positions then come from the functional groups.

    Returns
    -------
    float or None
        ``dot(ImagePositionPatient, normal)``, or None without usable position / orientation.
    """
    position = _position(ds, frame)
    normal = slice_normal(ds, frame)
    if position is None or normal is None:
        return None
    return float(position @ normal)


def _instance_number(ds: Any) -> float | None:
    try:
        value = ds.get("InstanceNumber")
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def slice_order(datasets: Sequence[Any]) -> list[int]:
    """Return the indices of ``datasets`` sorted from the lowest to the highest slice position.

    Parameters
    ----------
    datasets : sequence of pydicom.Dataset
        The slices of one series (headers are enough).

    Returns
    -------
    list of int
        A permutation of ``range(len(datasets))``. All slices are projected on one normal (that of
        the first slice with a usable orientation); if any slice lacks a position, InstanceNumber
        orders instead; if that is missing too, the given order is kept. Ties keep the given order.
    """
    normal = next((n for n in (slice_normal(ds) for ds in datasets) if n is not None), None)
    positions = [_position(ds) for ds in datasets]
    if normal is not None and all(p is not None for p in positions):
        keys = [float(p @ normal) for p in positions if p is not None]
        numbers = [_instance_number(ds) for ds in datasets]
        return sorted(range(len(datasets)), key=lambda i: (keys[i], numbers[i] if numbers[i] is not None else 0.0, i))
    numbers = [_instance_number(ds) for ds in datasets]
    if all(n is not None for n in numbers):
        LOGGER.debug("ordering %d slices by InstanceNumber (positions incomplete)", len(datasets))
        return sorted(range(len(datasets)), key=lambda i: (numbers[i], i))
    LOGGER.debug("keeping the given order of %d slices (no positions, no instance numbers)", len(datasets))
    return list(range(len(datasets)))
