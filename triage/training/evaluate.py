"""Evaluation of a model directory on labelled slices: predictions, metrics, thresholds, report files."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from triage.domain import CLASSES
from triage.errors import UsageError
from triage.imaging import IMAGE_SIZES
from triage.model import Classifier, compose_probabilities, update_metadata
from triage.training.dataset import SliceDataset, loader
from triage.training.kaggle import SliceTable, read_kaggle
from triage.training.metrics import calibrate_thresholds, class_metrics
from triage.training.plots import pr_curves, roc_curves
from triage.training.report import markdown_report

LOGGER = logging.getLogger(__name__)

DEFAULT_SENSITIVITY = 0.95


@dataclass(frozen=True)
class Evaluation:
    """Predictions on a table and the figures computed from them.

    Attributes
    ----------
    p_any
        (N,) stage-1 probabilities.
    p_subtype_given_ich
        (N, 5) stage-2 probabilities on every slice (before gating).
    probabilities
        (N, 6) reported probabilities: composed and gated by the detection threshold, as the worker does.
    thresholds, detection_threshold
        The operating points the metrics were computed at.
    metrics
        From :func:`triage.training.metrics.class_metrics`.
    """

    p_any: np.ndarray
    p_subtype_given_ich: np.ndarray
    probabilities: np.ndarray
    thresholds: dict[str, float]
    detection_threshold: float
    metrics: dict[str, Any]


def predict_table(
    classifier: Classifier, table: SliceTable, *, workers: int, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Stage-1 and stage-2 probabilities of every slice (stage 2 ungated, for calibration)."""
    if classifier.image_size not in IMAGE_SIZES:
        raise UsageError(f"model input size {classifier.image_size} cannot be made from DICOM: expected {IMAGE_SIZES}")
    dataset = SliceDataset(table, image_size=classifier.image_size, windowing=classifier.windowing)
    p_any, p_sub = [], []
    for images, _ in tqdm(loader(dataset, workers=workers, batch_size=classifier.batch_size), desc="predicting",
                          unit="batch", disable=not progress, leave=False):
        x = images.numpy()
        p_any.append(classifier.detect(x))
        p_sub.append(classifier.subtype(x))
    return np.concatenate(p_any), np.concatenate(p_sub)


def evaluate_table(
    classifier: Classifier,
    table: SliceTable,
    *,
    calibrate: bool = False,
    sensitivity: float = DEFAULT_SENSITIVITY,
    resamples: int = 1000,
    workers: int = 1,
    progress: bool = True,
) -> Evaluation:
    """Predict every slice and compute the metrics at the model's thresholds, or at calibrated ones.

    With ``calibrate``, each class gets the highest threshold that reaches ``sensitivity`` on this
    table (so the table must be validation data, not the test set), and the detection threshold
    becomes the lowest of them, so that stage 2 runs wherever a subtype could pass its threshold.
    """
    p_any, p_sub = predict_table(classifier, table, workers=workers, progress=progress)
    thresholds, detection = classifier.default_thresholds, classifier.detection_threshold
    if calibrate:
        ungated = compose_probabilities(p_any, p_sub, np.ones(len(p_any), dtype=bool))
        thresholds = calibrate_thresholds(table.labels, ungated, sensitivity=sensitivity, fallback=thresholds,
                                          studies=table.studies.astype(str))
        detection = min(thresholds.values())
    ran = p_any >= detection
    probabilities = compose_probabilities(p_any, p_sub[ran], ran)
    metrics = class_metrics(table.labels, probabilities, thresholds, table.studies.astype(str), resamples=resamples)
    metrics["detection_threshold"] = detection
    metrics["model_version"] = classifier.version
    return Evaluation(p_any, p_sub, probabilities, dict(thresholds), detection, metrics)


def write_outputs(evaluation: Evaluation, table: SliceTable, out: Path, *, title: str, facts: dict[str, Any]) -> Path:
    """metrics.json, report.md, roc.png, pr.png and predictions.csv in ``out``; returns the report path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(evaluation.metrics, indent=2) + "\n", encoding="utf-8")
    roc_curves(table.labels, evaluation.probabilities, evaluation.metrics, out / "roc.png")
    pr_curves(table.labels, evaluation.probabilities, evaluation.metrics, out / "pr.png")
    with (out / "predictions.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "study", *(f"p_{c}" for c in CLASSES), *(f"label_{c}" for c in CLASSES)])
        for i in range(len(table)):
            writer.writerow([table.ids[i], table.studies[i], *(f"{v:.6f}" for v in evaluation.probabilities[i]),
                             *table.labels[i].tolist()])
    report = markdown_report(
        evaluation.metrics, title=title, model=facts.get("model", {}), data=facts.get("data", {}),
        figures={"ROC curves": "roc.png", "Precision-recall curves": "pr.png"},
    )
    (out / "report.md").write_text(report + "\n", encoding="utf-8")
    return out / "report.md"


def evaluate_model(
    model_dir: Path,
    data_dir: Path,
    labels_csv: Path,
    out: Path | None,
    *,
    device: str = "auto",
    backend: str = "torch",
    batch_size: int = 16,
    workers: int = 1,
    calibrate: bool = False,
    sensitivity: float = DEFAULT_SENSITIVITY,
    resamples: int = 1000,
    progress: bool = True,
) -> dict[str, Any]:
    """``triage evaluate``: metrics of ``model_dir`` on Kaggle-layout data, written to ``out``.

    With ``calibrate``, the thresholds chosen on this data are written back into ``model.json``.

    Returns
    -------
    dict
        The metrics (as in ``metrics.json``).
    """
    classifier = Classifier(model_dir, device=device, batch_size=batch_size, backend=backend)
    table = read_kaggle(data_dir, labels_csv, index_cache=out / "index.csv" if out else None,
                        workers=workers, progress=progress)
    evaluation = evaluate_table(classifier, table, calibrate=calibrate, sensitivity=sensitivity,
                                resamples=resamples, workers=workers, progress=progress)
    if calibrate:
        update_metadata(model_dir, thresholds=evaluation.thresholds, detection_threshold=evaluation.detection_threshold)
        LOGGER.info("wrote thresholds for sensitivity %.2f into %s", sensitivity, model_dir / "model.json")
    if out is not None:
        facts = {
            "model": {"model": classifier.version, "backbone": classifier.backbone,
                      "input": f"{classifier.image_size} px, {classifier.windowing} windows",
                      "thresholds": f"calibrated on this data for sensitivity {sensitivity}" if calibrate
                      else "from model.json"},
            "data": {"data": str(data_dir), **table.summary()},
        }
        report = write_outputs(evaluation, table, out, title=f"Evaluation of {classifier.version}", facts=facts)
        LOGGER.info("wrote %s", report)
    return evaluation.metrics
