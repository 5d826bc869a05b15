"""Model directories with untrained weights, for tests and for trying the system without a model."""

from __future__ import annotations

from pathlib import Path

import torch

from triage.model.directory import STAGE_OUTPUTS, save_model_directory
from triage.model.network import build_network


def save_random_model(
    out: Path, *, backbone: str = "resnet18", image_size: int = 64, seed: int = 0, input_pool: int = 1
) -> Path:
    """Write a valid model directory whose two stages hold random (untrained) weights.

    Parameters
    ----------
    out
        Directory to write (created if needed).
    backbone
        torchvision backbone name.
    image_size
        Input side recorded in ``model.json``.
    seed
        Seed of the random initialisation (the global torch RNG is left untouched).
    input_pool
        Max-pooling factor in front of the network (see :func:`triage.model.build_network`).

    Returns
    -------
    Path
        ``out``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        networks = {
            stage: build_network(backbone, len(outputs), input_pool=input_pool)
            for stage, outputs in STAGE_OUTPUTS.items()
        }
    save_model_directory(
        Path(out),
        networks,
        name=f"untrained-{backbone}",
        backbone=backbone,
        image_size=image_size,
        input_pool=input_pool,
        initialisation=f"random (untrained, seed {seed})",
        training={"note": "untrained weights: the outputs mean nothing"},
    )
    return Path(out)
