"""The series queue: state changes checked against the state machine of ``triage.domain``."""

from __future__ import annotations

from triage.db.models import Series
from triage.domain import SeriesState, can_transition
from triage.errors import InvalidTransition


def set_state(series: Series, new: SeriesState, reason: str | None = None) -> None:
    """Move ``series`` to ``new`` (in its session), or raise :class:`InvalidTransition`.

    Leaving ``processing`` clears the lease; ``reason`` is shown on the worklist (why it failed or
    is not analysed) and cleared by a state without one.
    """
    current = SeriesState(series.state)
    if not can_transition(current, new):
        raise InvalidTransition(current.value, new.value)
    series.state = new.value
    series.state_reason = reason
    if current is SeriesState.PROCESSING:
        series.lease_owner = None
        series.lease_expires_at = None
