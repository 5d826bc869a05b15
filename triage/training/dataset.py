"""Torch datasets over a :class:`SliceTable`: DICOM -> model input with triage.imaging, plus light augmentation."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from triage.imaging import preprocess_file
from triage.training.kaggle import SliceTable

LOGGER = logging.getLogger(__name__)

#: Largest random shift (pixels at the model input) used by the training augmentation.
MAX_SHIFT_FRACTION = 0.04


def augment(image: np.ndarray, seed: int) -> np.ndarray:
    """Left-right flip with probability 1/2 and a small random shift (the same for a given seed).

    Heads are roughly symmetric and bleeds occur on either side, so a mirror image is a valid
    training example; shifts are filled with the image's own corner value (air).
    """
    rng = np.random.default_rng(seed)
    if rng.random() < 0.5:
        image = image[:, :, ::-1]
    limit = max(1, int(round(image.shape[-1] * MAX_SHIFT_FRACTION)))
    dy, dx = (int(v) for v in rng.integers(-limit, limit + 1, size=2))
    if dy or dx:
        shifted = np.empty_like(image)
        shifted[...] = image[:, :1, :1]
        h, w = image.shape[-2:]
        shifted[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
            :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
        ]
        image = shifted
    return np.ascontiguousarray(image)


class SliceDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Model input and labels of each slice of a table.

    Keys are either a row index (no augmentation) or ``(row, seed)`` from
    :class:`~triage.training.sampler.BalancedBatchSampler` (augmented with that seed when
    ``augmented`` is true), so results never depend on which loader process did the work.
    """

    def __init__(self, table: SliceTable, *, image_size: int, windowing: str, augmented: bool = False) -> None:
        self.table = table
        self.image_size = image_size
        self.windowing = windowing
        self.augmented = augmented

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, key: Any) -> tuple[torch.Tensor, torch.Tensor]:
        row, seed = (key, None) if isinstance(key, int | np.integer) else key
        image = preprocess_file(self.table.paths[row], self.image_size, self.windowing)
        if self.augmented and seed is not None:
            image = augment(image, seed)
        return torch.from_numpy(image), torch.from_numpy(self.table.labels[row].astype(np.float32))


def _seed_worker(worker_id: int) -> None:
    # Keep each loader process single-threaded: the training process owns the cores.
    torch.set_num_threads(1)


def loader(dataset: SliceDataset, *, workers: int, batch_size: int = 32, batch_sampler: Any = None) -> DataLoader:
    """A DataLoader with ``workers`` processes (0: in the main process), in order unless a batch sampler is given."""
    options: dict[str, Any] = {
        "num_workers": workers,
        "worker_init_fn": _seed_worker if workers else None,
        "persistent_workers": False,
        "pin_memory": torch.cuda.is_available(),
    }
    if workers:
        options["prefetch_factor"] = 2
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **options)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **options)
