"""Pixel data -> model input: Hounsfield units, windows, crop/pad/pool, slice order (numpy + pydicom only)."""

from triage.imaging.geometry import CROP_SIZE, fit_to_size, full_size, max_pool2, resize
from triage.imaging.hu import AIR_HU, number_of_frames, to_hu
from triage.imaging.order import slice_normal, slice_order, z_position
from triage.imaging.pipeline import IMAGE_SIZES, preprocess, preprocess_file, preprocess_hu, read_dataset
from triage.imaging.windows import (
    EPSILON,
    UPPER,
    WINDOW_MODES,
    WINDOWS,
    linear_window,
    sigmoid_reference,
    sigmoid_window,
    window_fill,
    window_stack,
)

__all__ = [
    "AIR_HU",
    "CROP_SIZE",
    "EPSILON",
    "IMAGE_SIZES",
    "UPPER",
    "WINDOWS",
    "WINDOW_MODES",
    "fit_to_size",
    "full_size",
    "linear_window",
    "max_pool2",
    "number_of_frames",
    "preprocess",
    "preprocess_file",
    "preprocess_hu",
    "read_dataset",
    "resize",
    "sigmoid_reference",
    "sigmoid_window",
    "slice_normal",
    "slice_order",
    "to_hu",
    "window_fill",
    "window_stack",
    "z_position",
]
