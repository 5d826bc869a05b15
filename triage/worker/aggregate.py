"""From slice probabilities to series findings: aggregation rule, key slice, thresholds, score. Pure numpy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from triage.domain import CLASSES, Findings, apply_thresholds


@dataclass(frozen=True)
class SliceProbabilities:
    """Per-slice probabilities of one series, ordered along z (head to foot or foot to head)."""

    instance_uids: Sequence[str]
    probabilities: np.ndarray  # (N, 6), columns in triage.domain.CLASSES order

    def __post_init__(self) -> None:
        if self.probabilities.shape != (len(self.instance_uids), len(CLASSES)):
            raise ValueError(
                f"probabilities of shape {self.probabilities.shape} do not fit "
                f"{len(self.instance_uids)} slices x {len(CLASSES)} classes"
            )


def aggregate(probabilities: np.ndarray, rule: str = "max", adjacent: int = 2) -> np.ndarray:
    """Series-level probability per class.

    Parameters
    ----------
    probabilities
        (N, C) per-slice probabilities in z order.
    rule
        ``max``: the per-class maximum over slices. ``adjacent``: the best run of ``adjacent`` neighbouring
        slices, each run scored by its weakest slice (max over windows of the min), so a finding needs
        ``adjacent`` consecutive slices above the threshold; series shorter than the run use all slices.
    """
    if probabilities.ndim != 2 or probabilities.shape[0] == 0:
        raise ValueError(f"expected (slices, classes) probabilities, got shape {probabilities.shape}")
    if rule == "max":
        return probabilities.max(axis=0)
    if rule != "adjacent":
        raise ValueError(f"unknown aggregation rule {rule!r}: expected 'max' or 'adjacent'")
    if adjacent < 1:
        raise ValueError(f"adjacent must be at least 1, got {adjacent}")
    k = min(adjacent, probabilities.shape[0])
    windows = np.lib.stride_tricks.sliding_window_view(probabilities, k, axis=0)  # (N-k+1, C, k)
    return windows.min(axis=2).max(axis=0)


def findings_for(
    slices: SliceProbabilities,
    thresholds: Mapping[str, float],
    enabled: Mapping[str, bool] | None = None,
    *,
    rule: str = "max",
    adjacent: int = 2,
) -> Findings:
    """Series findings: aggregated probabilities, flagged classes, key slice (argmax P(any))."""
    series = aggregate(slices.probabilities, rule, adjacent)
    probabilities = {name: float(p) for name, p in zip(CLASSES, series, strict=True)}
    key = int(np.argmax(slices.probabilities[:, 0]))
    return Findings(
        probabilities=probabilities,
        flagged_classes=apply_thresholds(probabilities, thresholds, enabled),
        key_instance_uid=str(slices.instance_uids[key]),
    )


def score(findings: Findings) -> float:
    """Worklist score in [0, 1]: the study-level P(any) (subtype probabilities never exceed it)."""
    return float(max(findings.probabilities.values(), default=0.0))
