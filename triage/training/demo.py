"""The demo model: a small two-stage network trained on phantoms in a few minutes on a laptop CPU.

A ResNet-18 that sees the 224 input average-pooled once more (112 px inside the network), trained from
random weights on 100 phantom studies for as many epochs as the time budget allows here. It finds
the obvious phantom bleeds (docs/model-card.md has its figures) and misses many subtle ones. The
model is for demonstration only: it has never seen a real head CT.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias

from triage.model import ModelMetadata, build_network, read_metadata
from triage.training.kaggle import read_labels
from triage.training.loop import TrainConfig
from triage.training.sampler import DETECT_SHARES, NEGATIVE
from triage.training.train import TrainRequest, train_model

LOGGER = logging.getLogger(__name__)

#: Share of positive slices in a stage-1 batch (62.5 %).
DETECT_SHARES_POSITIVE = 1 - DETECT_SHARES[NEGATIVE] / sum(DETECT_SHARES.values())

DEMO_SEED = 1
DEMO_STUDIES = 100
DEMO_SLICES = 32
DEMO_BACKBONE = "resnet18"
DEMO_IMAGE_SIZE = 224
DEMO_INPUT_POOL = 2
DEMO_BATCH = 32
#: Share of the time budget spent in training steps (the rest: phantoms, validation, saving).
TRAINING_SHARE = 0.7
#: Share of the validation studies with a bleed that the demo's `any` threshold flags.
DEMO_SENSITIVITY = 0.9
#: Fewest epochs per stage, whatever the budget: with 3 (what 3 minutes allow at 30 images/s) the model
#: flagged all eight demo studies (validation AUC 0.81); with 6 it flagged the four with a bleed and two
#: of the others (validation AUC 0.88; 0.93 test AUC on a machine twice as fast).
DEMO_MIN_EPOCHS = 6
DEMO_MAX_EPOCHS = 40


def training_speed(config: TrainConfig, steps: int = 3) -> float:
    """Training images per second of this recipe on this machine (a few steps on random data)."""
    network = build_network(config.backbone, 1, input_pool=config.input_pool)
    network.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    size = config.image_size
    x = torch.rand(config.batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.zeros(config.batch_size, 1)
    started = 0.0
    for step in range(steps + 1):
        if step == 1:
            started = time.monotonic()
        loss = F.binary_cross_entropy_with_logits(network(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * config.batch_size / max(time.monotonic() - started, 1e-6)


def demo_recipe(minutes: float, positives: int, *, min_epochs: int = DEMO_MIN_EPOCHS,
                progress: bool = False) -> TrainConfig:
    """The demo recipe, with as many epochs as fit in ``minutes`` on this machine, but at least ``min_epochs``
    (a slow machine takes longer rather than getting a model that cannot tell the studies apart).

    Each epoch shows every positive training slice about once (stage 1 in balanced batches, stage 2
    on positives only); the one-cycle schedule ends at the last epoch, whose weights are kept (the
    few validation phantoms are too noisy to pick an epoch by).
    """
    config = TrainConfig(
        backbone=DEMO_BACKBONE, image_size=DEMO_IMAGE_SIZE, input_pool=DEMO_INPUT_POOL, batch_size=DEMO_BATCH,
        learning_rate=1e-3, validation_fraction=0.15, init_weights="random", keep="last",
        workers=1, seed=DEMO_SEED, progress=progress,
    )
    speed = training_speed(config)
    train_positives = positives * (1 - config.validation_fraction)
    per_epoch = train_positives / (DETECT_SHARES_POSITIVE * DEMO_BATCH) + train_positives / DEMO_BATCH
    images = speed * minutes * 60 * TRAINING_SHARE
    config.epochs = max(min_epochs, min(DEMO_MAX_EPOCHS, int(images / (per_epoch * DEMO_BATCH))))
    config.patience = config.epochs + 1
    LOGGER.info("demo recipe: %.0f training images/s here -> %d epochs per stage", speed, config.epochs)
    return config


def train_demo_model(
    out: Path, *, work_dir: Path, minutes: float = 3.0, studies: int = DEMO_STUDIES,
    min_epochs: int = DEMO_MIN_EPOCHS, progress: bool = False
) -> Path:
    """Make phantoms (once) and train the demo model into ``out``.

    Parameters
    ----------
    out
        Model directory to write.
    work_dir
        Phantoms, checkpoints and the validation report go here (kept for later runs).
    minutes
        Rough time budget of the whole job on this machine (about 3 minutes on 2 CPU cores).
    studies
        Phantom studies to make (half with a bleed); 15 % of them are kept for validation.
    min_epochs
        Epochs per stage however short the budget (a slow machine takes longer than ``minutes``).
    progress
        Show progress bars.

    Returns
    -------
    Path
        ``out``, a model directory whose thresholds were calibrated on the validation phantoms.
    """
    from triage.synth import KAGGLE_CSV, KAGGLE_DIR, write_dataset

    phantoms = work_dir / "phantoms"
    labels = phantoms / KAGGLE_CSV
    if not labels.exists():
        work_dir.mkdir(parents=True, exist_ok=True)
        LOGGER.info("making %d phantom studies for the demo model in %s", studies, phantoms)
        write_dataset(phantoms, studies=studies, seed=DEMO_SEED, slices=DEMO_SLICES,
                      positive_fraction=0.5, kaggle=True)
    positives = int(sum(int(v[0]) for v in read_labels(labels).values()))
    config = demo_recipe(minutes, positives, min_epochs=min_epochs, progress=progress)
    request = TrainRequest(data_dir=phantoms / KAGGLE_DIR, labels_csv=labels, out=Path(out),
                           work_dir=work_dir / "training", name="demo-phantom-resnet18", calibrate=True,
                           sensitivity=DEMO_SENSITIVITY, resamples=200)
    metadata: ModelMetadata = train_model(config, request)
    auc = metadata.metrics.get("validation", {}).get("classes", {}).get("any", {}).get("auc")
    LOGGER.info("demo model %s ready (validation AUC any %s)", metadata.version,
                "n/a" if auc is None else f"{auc:.3f}")
    return Path(out)


def demo_model_auc(model_dir: Path) -> float | None:
    """The validation AUC for ``any`` recorded in a model directory (None when absent)."""
    value = read_metadata(model_dir).metrics.get("validation", {}).get("classes", {}).get("any", {}).get("auc")
    return None if value is None else float(np.float64(value))
