"""Aggregation of slice probabilities into series findings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from triage.domain import CLASSES
from triage.worker.aggregate import SliceProbabilities, aggregate, findings_for, score

THRESHOLDS = dict.fromkeys(CLASSES, 0.5)


def _probs(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def test_max_rule_and_key_slice() -> None:
    p = np.zeros((5, 6), np.float32)
    p[3] = [0.9, 0.0, 0.0, 0.0, 0.0, 0.8]
    p[1] = [0.6, 0.55, 0.0, 0.0, 0.0, 0.0]
    f = findings_for(SliceProbabilities([f"1.{i}" for i in range(5)], p), THRESHOLDS)
    assert f.probabilities["any"] == pytest.approx(0.9)
    assert f.flagged_classes == ("any", "epidural", "subdural")
    assert f.key_instance_uid == "1.3"
    assert score(f) == pytest.approx(0.9)


def test_adjacent_rule_needs_neighbours() -> None:
    single = _probs([[0.1] * 6, [0.95] * 6, [0.1] * 6, [0.1] * 6])
    pair = _probs([[0.1] * 6, [0.95] * 6, [0.7] * 6, [0.1] * 6])
    assert aggregate(single, "adjacent", 2)[0] == pytest.approx(0.1)
    assert aggregate(pair, "adjacent", 2)[0] == pytest.approx(0.7)
    assert aggregate(pair, "adjacent", 9)[0] == pytest.approx(0.1)  # shorter than the run: all slices


@given(arrays(np.float32, st.tuples(st.integers(1, 12), st.just(6)), elements=st.floats(0, 1, width=32)),
       st.integers(1, 5))
def test_adjacent_never_exceeds_max(p: np.ndarray, k: int) -> None:
    assert np.all(aggregate(p, "adjacent", k) <= aggregate(p, "max") + 1e-7)
    assert np.allclose(aggregate(p, "adjacent", 1), aggregate(p, "max"))


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        SliceProbabilities(["1"], np.zeros((2, 6)))
    with pytest.raises(ValueError, match="unknown aggregation rule 'mean'"):
        aggregate(np.zeros((2, 6)), "mean")
    with pytest.raises(ValueError, match=r"shape \(0, 6\)"):
        aggregate(np.zeros((0, 6)))


def test_disabled_subtype_does_not_flag() -> None:
    p = np.zeros((1, 6), np.float32)
    p[0, 5] = 0.9
    p[0, 0] = 0.4
    f = findings_for(SliceProbabilities(["1"], p), THRESHOLDS, {"subdural": False})
    assert not f.flagged
