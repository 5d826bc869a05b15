"""Evaluation figures: per-class precision/recall/F1/count, ROC AUC with a bootstrap interval,
the Kaggle weighted log loss, study-level AUC, and thresholds chosen for a target sensitivity."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, precision_recall_fscore_support

from triage.domain import ANY, CLASSES

LOGGER = logging.getLogger(__name__)

#: Kaggle RSNA 2019 weights: 2 for ``any``, 1 for each subtype.
KAGGLE_WEIGHTS: Mapping[str, float] = {ANY: 2.0, **{name: 1.0 for name in CLASSES[1:]}}
LOG_LOSS_EPS = 1e-7


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half; NaN without both classes."""
    ordered = _Ordered(labels, scores)
    return ordered.auc(np.ones(len(ordered.positive)))


class _Ordered:
    """Labels sorted by score with tie groups, so that weighted AUCs cost O(N) each (bootstrap)."""

    def __init__(self, labels: np.ndarray, scores: np.ndarray, groups: np.ndarray | None = None) -> None:
        scores = np.asarray(scores, dtype=np.float64)
        self.order = np.argsort(scores, kind="mergesort")
        ordered = scores[self.order]
        self.positive = np.asarray(labels).astype(bool)[self.order]
        self.ties = np.r_[0, np.cumsum(np.diff(ordered) != 0)]
        self.groups = None if groups is None else np.asarray(groups)[self.order]

    def auc(self, weights: np.ndarray) -> float:
        """AUC where slice i counts ``weights[i]`` times (weights in score order)."""
        positive = np.bincount(self.ties, weights * self.positive)
        negative = np.bincount(self.ties, weights * ~self.positive)
        total_pos, total_neg = positive.sum(), negative.sum()
        if total_pos == 0 or total_neg == 0:
            return float("nan")
        below = np.cumsum(negative) - negative
        return float((positive * (below + 0.5 * negative)).sum() / (total_pos * total_neg))


def bootstrap_auc(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """95 % percentile interval of the AUC, resampling whole studies when ``groups`` is given.

    Slices of one study are correlated, so the cluster bootstrap (by study) gives honest intervals;
    without groups, slices are resampled. A resample is a weight per slice (how often its study was
    drawn), so each one costs one pass over the sorted scores.
    """
    if groups is None:
        groups = np.arange(len(np.asarray(labels)))
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    ordered = _Ordered(labels, scores, inverse)
    assert ordered.groups is not None  # noqa: S101 - set just above
    count = int(inverse.max()) + 1 if len(inverse) else 0
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples if count else 0):
        drawn = np.bincount(rng.integers(0, count, size=count), minlength=count)
        value = ordered.auc(drawn[ordered.groups].astype(np.float64))
        if not np.isnan(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def weighted_log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The Kaggle RSNA 2019 metric: per-class mean binary log loss, averaged with weights 2,1,1,1,1,1."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    per_class = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=0)
    weights = np.array([KAGGLE_WEIGHTS[name] for name in CLASSES])
    return float((per_class * weights).sum() / weights.sum())


def study_max(values: np.ndarray, studies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per study the maximum of ``values`` (the study-level rule of DESIGN.md); returns (study ids, maxima)."""
    unique, inverse = np.unique(np.asarray(studies), return_inverse=True)
    maxima = np.full(len(unique), -np.inf)
    np.maximum.at(maxima, inverse, np.asarray(values, dtype=np.float64))
    return unique, maxima


def threshold_for_sensitivity(labels: np.ndarray, scores: np.ndarray, sensitivity: float) -> float | None:
    """The highest threshold whose recall is at least ``sensitivity`` (None without positives)."""
    positives = np.sort(np.asarray(scores)[np.asarray(labels).astype(bool)])[::-1]
    if len(positives) == 0:
        return None
    needed = max(1, int(np.ceil(sensitivity * len(positives))))
    return float(positives[needed - 1])


def class_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    thresholds: Mapping[str, float],
    studies: np.ndarray | None = None,
    *,
    resamples: int = 1000,
) -> dict[str, Any]:
    """Every figure of ``metrics.json`` (DESIGN.md section 3) for (N, 6) labels and probabilities.

    Returns
    -------
    dict
        ``classes`` (per class: precision, recall, f1, count, threshold, auc, auc_ci95,
        average_precision), ``weighted_log_loss``, ``study_auc_any`` (+ ``study_auc_any_ci95``),
        ``slices``, ``studies``, ``positive_slices``, ``positive_studies``.
    """
    labels = np.asarray(labels).astype(np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    result: dict[str, Any] = {"classes": {}}
    for k, name in enumerate(CLASSES):
        result["classes"][name] = _one_class(labels[:, k], probabilities[:, k], thresholds[name], studies, resamples)
    result["weighted_log_loss"] = weighted_log_loss(labels, probabilities)
    result["slices"] = len(labels)
    result["positive_slices"] = int(labels[:, 0].sum())
    if studies is not None:
        _, study_scores = study_max(probabilities[:, 0], studies)
        _, study_labels = study_max(labels[:, 0], studies)
        result["studies"] = len(study_scores)
        result["positive_studies"] = int(study_labels.sum())
        result["study_auc_any"] = _finite(auc(study_labels, study_scores))
        flagged = study_scores >= thresholds[ANY]
        result["study_any"] = {
            "threshold": float(thresholds[ANY]),
            "flagged": int(flagged.sum()),
            "sensitivity": _ratio(int((flagged & (study_labels == 1)).sum()), int((study_labels == 1).sum())),
            "specificity": _ratio(int((~flagged & (study_labels == 0)).sum()), int((study_labels == 0).sum())),
            "precision": _ratio(int((flagged & (study_labels == 1)).sum()), int(flagged.sum())),
        }
        interval = bootstrap_auc(study_labels, study_scores, resamples=resamples)
        result["study_auc_any_ci95"] = [_finite(v) for v in interval]
    return result


def _one_class(
    labels: np.ndarray, scores: np.ndarray, threshold: float, studies: np.ndarray | None, resamples: int
) -> dict[str, Any]:
    predicted = (scores >= threshold).astype(np.int64)
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predicted, average="binary", zero_division=0
    )
    has_both = 0 < labels.sum() < len(labels)
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "count": int(labels.sum()),
        "threshold": float(threshold),
        "auc": _finite(auc(labels, scores)),
        "auc_ci95": [_finite(v) for v in bootstrap_auc(labels, scores, studies, resamples=resamples)],
        "average_precision": _finite(float(average_precision_score(labels, scores))) if has_both else None,
    }


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _finite(value: float) -> float | None:
    """JSON has no NaN: undefined figures become null."""
    return None if value is None or not np.isfinite(value) else float(value)


def threshold_for_best_f1(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """The threshold with the highest F1 (None without positives)."""
    labels = np.asarray(labels).astype(bool)
    if not labels.any():
        return None
    precision, recall, thresholds = precision_recall_curve(labels, np.asarray(scores))
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])


def calibrate_thresholds(
    labels: np.ndarray,
    probabilities: np.ndarray,
    *,
    sensitivity: float,
    fallback: Mapping[str, float],
    studies: np.ndarray | None = None,
) -> dict[str, float]:
    """Operating thresholds chosen on (validation) slices.

    ``any`` decides whether a study goes to the top of the worklist, and a study is flagged when
    its highest slice P(any) passes the threshold; so with ``studies`` given, ``any`` gets the
    highest threshold that flags ``sensitivity`` of the studies with a bleed (without studies: of
    the positive slices). Each subtype, which names the finding, gets the threshold of its best
    F1 over slices. A class without positives keeps its ``fallback`` threshold.
    """
    labels, probabilities = np.asarray(labels), np.asarray(probabilities)
    chosen = {}
    for k, name in enumerate(CLASSES):
        if name == ANY and studies is not None:
            _, study_scores = study_max(probabilities[:, k], studies)
            _, study_labels = study_max(labels[:, k], studies)
            value = threshold_for_sensitivity(study_labels, study_scores, sensitivity)
        elif name == ANY:
            value = threshold_for_sensitivity(labels[:, k], probabilities[:, k], sensitivity)
        else:
            value = threshold_for_best_f1(labels[:, k], probabilities[:, k])
        chosen[name] = fallback[name] if value is None else min(max(value, 1e-6), 1.0)
    return chosen


def table_rows(
    metrics: Mapping[str, Any], classes: Sequence[str] = CLASSES
) -> list[tuple[str, float, float, float, int]]:
    """(class, precision, recall, F1, count) rows in class order, as the paper's Table 2."""
    return [
        (name, metrics["classes"][name]["precision"], metrics["classes"][name]["recall"],
         metrics["classes"][name]["f1"], metrics["classes"][name]["count"])
        for name in classes
    ]
