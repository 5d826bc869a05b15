"""Metrics: AUC and its bootstrap interval, weighted log loss, study level, calibration."""

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from triage.domain import CLASSES
from triage.training.metrics import (
    auc,
    bootstrap_auc,
    calibrate_thresholds,
    class_metrics,
    threshold_for_sensitivity,
    weighted_log_loss,
)


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.random(500) + 0.3 * labels, 1)  # many ties
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert math.isnan(auc(np.ones(4), np.arange(4)))


def test_bootstrap_interval_brackets_the_auc_and_narrows_with_data():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 4000)
    scores = rng.random(4000) + 0.5 * labels
    groups = np.repeat(np.arange(400), 10)
    low, high = bootstrap_auc(labels, scores, groups, resamples=200)
    assert low < auc(labels, scores) < high
    small_low, small_high = bootstrap_auc(labels[:400], scores[:400], groups[:400], resamples=200)
    assert small_high - small_low > high - low


def test_weighted_log_loss_is_the_kaggle_formula():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, (50, 6))
    probabilities = rng.random((50, 6))
    per_class = [log_loss(labels[:, k], probabilities[:, k], labels=[0, 1]) for k in range(6)]
    expected = (2 * per_class[0] + sum(per_class[1:])) / 7
    assert weighted_log_loss(labels, probabilities) == pytest.approx(expected, rel=1e-6)


def test_threshold_for_sensitivity():
    labels = np.array([1, 1, 1, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.4, 0.2, 0.5, 0.1])
    assert threshold_for_sensitivity(labels, scores, 0.75) == 0.4
    assert threshold_for_sensitivity(labels, scores, 1.0) == 0.2
    assert threshold_for_sensitivity(np.zeros(3), scores[:3], 0.9) is None
    subdural = np.array([1, 0, 1, 0, 0, 0])
    subdural_scores = np.array([0.9, 0.6, 0.8, 0.3, 0.1, 0.05])
    chosen = calibrate_thresholds(
        np.c_[labels, np.zeros((6, 4)), subdural], np.c_[scores, np.zeros((6, 4)), subdural_scores],
        sensitivity=0.75, fallback=dict.fromkeys(CLASSES, 0.5),
    )
    assert chosen["any"] == 0.4  # target sensitivity
    assert chosen["epidural"] == 0.5  # no positives: the fallback
    assert chosen["subdural"] == 0.8  # best F1 (1.0): both positives, no false positive



def test_class_metrics_has_every_contract_key():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, (120, 6))
    labels[:60] = 0  # the first six studies have no bleed
    probabilities = np.clip(labels * 0.6 + rng.random((120, 6)) * 0.5, 0, 1)
    studies = np.repeat([f"1.2.{i}" for i in range(12)], 10)
    metrics = class_metrics(labels, probabilities, dict.fromkeys(CLASSES, 0.5), studies, resamples=50)
    for name in CLASSES:
        m = metrics["classes"][name]
        assert {"precision", "recall", "f1", "count", "auc", "auc_ci95"} <= set(m)
        assert m["count"] == int(labels[:, CLASSES.index(name)].sum())
        predicted = probabilities[:, CLASSES.index(name)] >= 0.5
        truth = labels[:, CLASSES.index(name)] == 1
        assert m["recall"] == pytest.approx((predicted & truth).sum() / truth.sum())
        assert m["auc_ci95"][0] <= m["auc"] <= m["auc_ci95"][1]
    assert metrics["studies"] == 12
    assert 0 <= metrics["study_auc_any"] <= 1
    assert metrics["weighted_log_loss"] > 0
