"""The series state machine and threshold rules."""

from __future__ import annotations

import itertools

import pytest

from triage.db.models import Series
from triage.db.queue import set_state
from triage.domain import CLASSES, Findings, Priority, SeriesState, apply_thresholds, can_transition
from triage.errors import InvalidTransition

S = SeriesState
ALLOWED = {
    (S.RECEIVING, S.QUEUED), (S.RECEIVING, S.NOT_ANALYSED),
    (S.QUEUED, S.PROCESSING), (S.QUEUED, S.RECEIVING),
    (S.PROCESSING, S.CLASSIFIED), (S.PROCESSING, S.FAILED), (S.PROCESSING, S.QUEUED),
    (S.PROCESSING, S.RECEIVING),
    (S.CLASSIFIED, S.RECEIVING), (S.CLASSIFIED, S.QUEUED),
    (S.FAILED, S.RECEIVING), (S.FAILED, S.QUEUED),
}


@pytest.mark.parametrize(("current", "new"), list(itertools.product(S, S)))
def test_transition_table(current: SeriesState, new: SeriesState) -> None:
    assert can_transition(current, new) is ((current, new) in ALLOWED)


def test_happy_path_and_retry() -> None:
    series = Series(state=S.RECEIVING.value)
    for state in (S.QUEUED, S.PROCESSING):
        set_state(series, state)
    series.lease_owner = "host:1"
    set_state(series, S.QUEUED, "lease expired")
    assert series.lease_owner is None and series.state_reason == "lease expired"
    set_state(series, S.PROCESSING)
    set_state(series, S.FAILED, "model raised")
    assert series.state == "failed" and series.state_reason == "model raised"


@pytest.mark.parametrize(("current", "new"), [(S.RECEIVING, S.CLASSIFIED), (S.NOT_ANALYSED, S.QUEUED),
                                              (S.CLASSIFIED, S.PROCESSING), (S.QUEUED, S.FAILED)])
def test_forbidden_transitions_raise_and_change_nothing(current: SeriesState, new: SeriesState) -> None:
    series = Series(state=current.value)
    with pytest.raises(InvalidTransition, match=f"{current.value!r} to {new.value!r}"):
        set_state(series, new)
    assert series.state == current.value


def test_thresholds_and_switches() -> None:
    probs = dict.fromkeys(CLASSES, 0.1) | {"any": 0.9, "subdural": 0.7, "epidural": 0.5}
    thresholds = dict.fromkeys(CLASSES, 0.5)
    assert apply_thresholds(probs, thresholds) == ("any", "epidural", "subdural")
    assert apply_thresholds(probs, thresholds, {"subdural": False}) == ("any", "epidural")
    findings = Findings(probs, apply_thresholds(probs, thresholds))
    assert findings.flagged and findings.priority is Priority.CRITICAL
    assert findings.subtypes == ("epidural", "subdural")
    assert Findings(probs, ()).priority is Priority.ROUTINE
