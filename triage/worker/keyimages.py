"""Key slices rendered for the study page: brain-windowed PNG with the stage-1 activation map on top."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from triage.imaging import CROP_SIZE, fit_to_size, linear_window, preprocess_hu, read_dataset, resize, to_hu
from triage.model import Classifier

LOGGER = logging.getLogger(__name__)

KEY_IMAGE_DIR = "keyimages"
BRAIN = (40.0, 80.0)
#: Heat below this fraction of the map's maximum is not drawn, so the anatomy stays readable.
HEAT_FLOOR = 0.35
MAX_ALPHA = 0.55


def pick_key_slices(probabilities: np.ndarray, flagged_columns: Sequence[int], limit: int = 3) -> list[int]:
    """Row indices to render: argmax P(any) first, then the best slice of each flagged subtype column."""
    rows = [int(np.argmax(probabilities[:, 0]))]
    for column in flagged_columns:
        row = int(np.argmax(probabilities[:, column]))
        if row not in rows:
            rows.append(row)
    return rows[:limit]


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """A perceptually ordered yellow-red ramp for values in [0, 1]: (H, W, 3) float32 in [0, 1]."""
    h = np.clip(heat, 0.0, 1.0)[..., None]
    low = np.array([0.85, 0.1, 0.05], np.float32)
    high = np.array([1.0, 0.95, 0.25], np.float32)
    return (low + (high - low) * h).astype(np.float32)


def overlay(hu: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """Brain-windowed grey image with the heat map blended in: (H, W, 3) uint8."""
    grey = linear_window(hu, *BRAIN)[..., None].repeat(3, axis=2)
    heat = resize(heat.astype(np.float32), hu.shape) if heat.shape != hu.shape else heat
    peak = float(heat.max())
    scaled = heat / peak if peak > 0 else heat
    alpha = np.where(scaled >= HEAT_FLOOR, MAX_ALPHA * (scaled - HEAT_FLOOR) / (1 - HEAT_FLOOR), 0.0)[..., None]
    rgb = grey * (1 - alpha) + heat_colours(scaled) * alpha
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def render_key_image(classifier: Classifier, source: Path, target: Path) -> None:
    """Render ``source`` (a stored slice) with the classifier's activation map into the PNG ``target``."""
    hu = fit_to_size(to_hu(read_dataset(source)), CROP_SIZE)
    heat = classifier.activation_map(preprocess_hu(hu, classifier.image_size, classifier.windowing))
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    Image.fromarray(overlay(hu, heat)).save(temporary, format="PNG", optimize=True)
    temporary.replace(target)


def key_image_path(series_uid: str, sop_instance_uid: str) -> str:
    """Where a key image lives, relative to the storage directory (UIDs were validated at ingest)."""
    return f"{KEY_IMAGE_DIR}/{series_uid}/{sop_instance_uid}.png"
