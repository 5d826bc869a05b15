"""PNG figures of training and evaluation: loss curves, ROC and precision-recall curves (matplotlib, Agg)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from triage.domain import CLASSES  # noqa: E402

LOGGER = logging.getLogger(__name__)


def training_curve(histories: Mapping[str, Sequence[Mapping[str, float | None]]], path: Path) -> Path:
    """Train and validation loss per epoch, one panel per stage."""
    stages = [stage for stage, history in histories.items() if history]
    figure, axes = plt.subplots(1, max(1, len(stages)), figsize=(5 * max(1, len(stages)), 3.6), squeeze=False)
    for axis, stage in zip(axes[0], stages, strict=False):
        history = histories[stage]
        epochs = [row["epoch"] for row in history]
        axis.plot(epochs, [_value(row["train_loss"]) for row in history], marker="o", label="training")
        axis.plot(epochs, [_value(row["validation_loss"]) for row in history], marker="o", label="validation")
        axis.set(title=f"stage {stage}", xlabel="epoch", ylabel="binary cross-entropy")
        axis.grid(alpha=0.3)
        axis.legend()
    return _save(figure, path)


def _value(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def roc_curves(labels: np.ndarray, probabilities: np.ndarray, metrics: Mapping[str, Any], path: Path) -> Path:
    """ROC curve of every class that has positives and negatives, AUC in the legend."""
    figure, axis = plt.subplots(figsize=(5.5, 5))
    for k, name in enumerate(CLASSES):
        if 0 < labels[:, k].sum() < len(labels):
            fpr, tpr, _ = roc_curve(labels[:, k], probabilities[:, k])
            axis.plot(fpr, tpr, label=f"{name} (AUC {metrics['classes'][name]['auc']:.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
    axis.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC per class (slice level)")
    axis.legend(loc="lower right", fontsize=8)
    return _save(figure, path)


def pr_curves(labels: np.ndarray, probabilities: np.ndarray, metrics: Mapping[str, Any], path: Path) -> Path:
    """Precision-recall curve of every class, average precision in the legend."""
    figure, axis = plt.subplots(figsize=(5.5, 5))
    for k, name in enumerate(CLASSES):
        if 0 < labels[:, k].sum() < len(labels):
            precision, recall, _ = precision_recall_curve(labels[:, k], probabilities[:, k])
            ap = metrics["classes"][name]["average_precision"]
            axis.plot(recall, precision, label=f"{name} (AP {ap:.3f})")
    axis.set(xlabel="recall", ylabel="precision", title="Precision-recall per class (slice level)", ylim=(0, 1.02))
    axis.legend(loc="lower left", fontsize=8)
    return _save(figure, path)


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
