"""The series queue: state changes checked against the state machine, claims with leases, lease expiry.

Claiming is safe across processes and hosts: PostgreSQL uses ``SELECT ... FOR UPDATE SKIP LOCKED``;
SQLite an atomic conditional ``UPDATE`` inside the ``BEGIN IMMEDIATE`` transaction that every
transaction of :func:`triage.db.engine.create_db_engine` takes.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from triage.db.models import Series
from triage.domain import SeriesState, can_transition
from triage.errors import InvalidTransition

LOGGER = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Claim:
    """A series leased to one worker until ``expires_at``."""

    series_id: int
    owner: str
    attempt: int
    expires_at: dt.datetime


def claim_next(session: Session, owner: str, lease_seconds: float, now: dt.datetime) -> Claim | None:
    """Lease the oldest ``queued`` series to ``owner``; None when the queue is empty.

    Call inside a transaction; the claim counts once it commits.
    """
    expires = now + dt.timedelta(seconds=lease_seconds)
    candidates = (
        select(Series.id)
        .where(Series.state == SeriesState.QUEUED.value)
        .order_by(Series.ready_at, Series.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        series_id = session.scalar(candidates.with_for_update(skip_locked=True))
        if series_id is None:
            return None
        condition = Series.id == series_id
    else:
        condition = Series.id == candidates.scalar_subquery()
    claimed = session.execute(
        update(Series)
        .where(condition, Series.state == SeriesState.QUEUED.value)
        .values(
            state=SeriesState.PROCESSING.value,
            state_reason=None,
            lease_owner=owner,
            lease_expires_at=expires,
            attempts=Series.attempts + 1,
            processing_started_at=now,
        )
        .returning(Series.id, Series.attempts)
        .execution_options(synchronize_session=False)
    ).first()
    if claimed is None:
        return None
    return Claim(series_id=claimed.id, owner=owner, attempt=claimed.attempts, expires_at=expires)


def renew_lease(session: Session, claim: Claim, lease_seconds: float, now: dt.datetime) -> Claim | None:
    """Extend the lease of a claim that is still ours; None when it was lost (expired and re-taken)."""
    expires = now + dt.timedelta(seconds=lease_seconds)
    result = session.execute(
        update(Series)
        .where(
            Series.id == claim.series_id,
            Series.state == SeriesState.PROCESSING.value,
            Series.lease_owner == claim.owner,
        )
        .values(lease_expires_at=expires)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return Claim(claim.series_id, claim.owner, claim.attempt, expires)


def lock_claimed(session: Session, claim: Claim) -> Series | None:
    """The series of ``claim`` locked for the final write, or None when the lease is no longer ours."""
    statement = select(Series).where(
        Series.id == claim.series_id,
        Series.state == SeriesState.PROCESSING.value,
        Series.lease_owner == claim.owner,
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    return session.scalar(statement)


def give_up(series: Series, reason: str, max_attempts: int) -> SeriesState:
    """After a failed attempt: back to ``queued`` for another try, or ``failed`` after ``max_attempts``."""
    if series.attempts >= max_attempts:
        set_state(series, SeriesState.FAILED, f"{reason} (after {series.attempts} attempts)")
        return SeriesState.FAILED
    set_state(series, SeriesState.QUEUED, f"retrying: {reason}")
    return SeriesState.QUEUED


def release_expired(session: Session, now: dt.datetime, max_attempts: int) -> list[int]:
    """Return series whose lease expired (their worker died or hung) to the queue, or fail them."""
    statement = select(Series).where(
        Series.state == SeriesState.PROCESSING.value, Series.lease_expires_at < now
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    released = []
    for series in session.scalars(statement):
        owner = series.lease_owner
        state = give_up(series, f"the lease of worker {owner} expired", max_attempts)
        LOGGER.warning("series %d: lease of %s expired, now %s", series.id, owner, state.value)
        released.append(series.id)
    return released


def release_owned(session: Session, owner: str) -> list[int]:
    """On a clean stop: hand every series leased by ``owner`` back to the queue (no attempt counted)."""
    statement = select(Series).where(
        Series.state == SeriesState.PROCESSING.value, Series.lease_owner == owner
    )
    released = []
    for series in session.scalars(statement):
        series.attempts = max(0, series.attempts - 1)
        set_state(series, SeriesState.QUEUED, "worker stopped; queued again")
        released.append(series.id)
    return released
