"""Plain values shared by every part of triage: classes, states, priorities, findings. No I/O."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

#: The six outputs of the model, in the order used everywhere (arrays, columns, JSON).
ANY = "any"
SUBTYPES: tuple[str, ...] = (
    "epidural",
    "intraparenchymal",
    "intraventricular",
    "subarachnoid",
    "subdural",
)
CLASSES: tuple[str, ...] = (ANY, *SUBTYPES)


class SeriesState(enum.StrEnum):
    """Life cycle of a series in the queue.

    ``receiving`` -> ``queued`` -> ``processing`` -> ``classified`` | ``failed``; a series that the
    series gate does not analyse is ``not_analysed`` (stored and listed, never dropped).
    """

    RECEIVING = "receiving"
    QUEUED = "queued"
    PROCESSING = "processing"
    CLASSIFIED = "classified"
    FAILED = "failed"
    NOT_ANALYSED = "not_analysed"


#: Allowed state changes. ``processing -> queued`` is a released or expired lease (retry);
#: ``classified``/``failed`` -> ``receiving`` is a late slice that re-opens a finished series;
#: ``failed -> queued`` is an operator's retry.
TRANSITIONS: Mapping[SeriesState, frozenset[SeriesState]] = {
    SeriesState.RECEIVING: frozenset({SeriesState.QUEUED, SeriesState.NOT_ANALYSED}),
    SeriesState.QUEUED: frozenset({SeriesState.PROCESSING, SeriesState.RECEIVING}),
    SeriesState.PROCESSING: frozenset(
        {SeriesState.CLASSIFIED, SeriesState.FAILED, SeriesState.QUEUED, SeriesState.RECEIVING}
    ),
    SeriesState.CLASSIFIED: frozenset({SeriesState.RECEIVING, SeriesState.QUEUED}),
    SeriesState.FAILED: frozenset({SeriesState.RECEIVING, SeriesState.QUEUED}),
    SeriesState.NOT_ANALYSED: frozenset(),
}


def can_transition(current: SeriesState, new: SeriesState) -> bool:
    """Return whether a series may move from ``current`` to ``new``."""
    return new in TRANSITIONS[current]


class Priority(enum.StrEnum):
    """Worklist priority of a study."""

    CRITICAL = "critical"
    ROUTINE = "routine"


class Role(enum.StrEnum):
    """Web user roles."""

    RADIOLOGIST = "radiologist"
    ADMIN = "admin"


class AlertState(enum.StrEnum):
    """State of an alert outbox row."""

    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"
    CANCELLED = "cancelled"


class AlertChannel(enum.StrEnum):
    """Where an alert goes."""

    WEBHOOK = "webhook"
    EMAIL = "email"
    DICOM = "dicom"


@dataclass(frozen=True)
class Findings:
    """Study-level result of the classifier, after the admin thresholds were applied.

    Attributes
    ----------
    probabilities
        Per class (``CLASSES``) probability at study level.
    flagged_classes
        Classes whose probability passed its threshold (``any`` included when it passed).
    key_instance_uid
        SOP Instance UID of the slice with the highest P(any), or None.
    """

    probabilities: Mapping[str, float]
    flagged_classes: tuple[str, ...] = ()
    key_instance_uid: str | None = None

    @property
    def subtypes(self) -> tuple[str, ...]:
        """Flagged subtype names (``any`` left out)."""
        return tuple(name for name in self.flagged_classes if name != ANY)

    @property
    def flagged(self) -> bool:
        """Whether the study goes to the top of the worklist."""
        return bool(self.flagged_classes)

    @property
    def priority(self) -> Priority:
        """``critical`` when flagged, ``routine`` otherwise."""
        return Priority.CRITICAL if self.flagged else Priority.ROUTINE


def apply_thresholds(
    probabilities: Mapping[str, float],
    thresholds: Mapping[str, float],
    enabled: Mapping[str, bool] | None = None,
) -> tuple[str, ...]:
    """Return the classes whose probability is at or above its threshold (and whose alert is enabled).

    Parameters
    ----------
    probabilities
        Per class probability.
    thresholds
        Per class threshold in [0, 1]; a missing class never flags.
    enabled
        Per class switch set by the admin; a missing class counts as enabled.
    """
    enabled = enabled or {}
    return tuple(
        name
        for name in CLASSES
        if name in thresholds
        and enabled.get(name, True)
        and probabilities.get(name, 0.0) >= thresholds[name]
    )
