"""The alert dispatcher: sends due outbox rows on each channel, retries with backoff, gives up visibly.

Each channel is sent from its own thread (and has its own scheduler job in the daemon), so a slow or
dead receiver delays only its own rows. In the daemon, a commit that adds outbox rows runs the
channel's job at once (no wait for the next poll). Each row is claimed before it is sent (see
``triage.db.outbox.claim_next``), so two dispatchers never send one row at the same time; a row is
sent at least once, with its idempotency key in the message so receivers can drop repeats.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from triage.alerts import metrics
from triage.alerts.channels import sender_for
from triage.config import Settings
from triage.db.engine import transaction
from triage.db.models import utcnow
from triage.db.outbox import (
    ALERT,
    ALL_CHANNELS,
    ENQUEUED,
    Claim,
    cancel,
    cancel_reason,
    claim_next,
    configured_channels,
    record_failure,
    record_success,
)
from triage.domain import AlertState

LOGGER = logging.getLogger(__name__)

#: How long one dispatch pass keeps taking new rows of one channel before it yields to the next pass.
CHANNEL_BUDGET_SECONDS = 20.0
ESCALATION_CHECK_SECONDS = 15.0


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Exponential (``base * 2**(attempt-1)``, at most ``cap``) with "equal jitter": a uniformly random
    value between half and all of it, so receivers that come back are not hit by every retry at once.
    """
    raw = min(cap, base * 2.0 ** max(0, attempt - 1))
    draw = (rng or random).random()
    return raw * (0.5 + 0.5 * draw)


def claim_lease_seconds(settings: Settings, channel: str) -> float:
    """How long a claimed row is left alone before another dispatcher may retry it (send timeout + margin)."""
    alerts = settings.alerts
    timeout = {
        "webhook": alerts.webhook.timeout_seconds,
        "email": alerts.smtp.timeout_seconds,
        "dicom": alerts.dicom.timeout_seconds * 4,
    }.get(channel, 30.0)
    return 2 * timeout + 30.0


def _attempt(factory: sessionmaker[Session], settings: Settings, claim: Claim, at: dt.datetime,
             simulated: bool) -> bool:
    """Send one claimed row and record the outcome; return whether it was delivered."""
    try:
        detail = sender_for(claim.channel)(settings, factory, claim)
    except Exception as exc:  # noqa: BLE001 - any failure of a channel is recorded, never raised
        _failed(factory, settings, claim, f"{type(exc).__name__}: {exc}", at if simulated else utcnow())
        return False
    _delivered(factory, claim, at if simulated else utcnow(), detail)
    return True


def _failed(factory: sessionmaker[Session], settings: Settings, claim: Claim, error: str,
            when: dt.datetime) -> None:
    alerts = settings.alerts
    retry_at = when + dt.timedelta(seconds=backoff_delay(claim.attempt, alerts.backoff_seconds,
                                                         alerts.max_backoff_seconds))
    with transaction(factory) as session:
        state = record_failure(session, claim, error, max_attempts=alerts.max_attempts, retry_at=retry_at)
    metrics.FAILED.labels(claim.channel).inc()
    if state == AlertState.DEAD.value:
        metrics.DEAD.labels(claim.channel).inc()
        LOGGER.error("alert %d (%s %s) is dead after %d attempts: %s", claim.id, claim.channel, claim.kind,
                     claim.attempt, error)
    else:
        LOGGER.warning("alert %d (%s %s) attempt %d failed, retry at %s: %s", claim.id, claim.channel,
                       claim.kind, claim.attempt, retry_at.isoformat(timespec="seconds"), error)


def _delivered(factory: sessionmaker[Session], claim: Claim, sent_at: dt.datetime, detail: dict[str, object]) -> None:
    with transaction(factory) as session:
        delivered = record_success(session, claim, sent_at, **detail)
    metrics.SENT.labels(claim.channel, claim.kind).inc()
    if claim.kind == ALERT:
        metrics.observe_alert(claim.channel, sent_at, delivered.series_last_received_at,
                              delivered.study_first_received_at)
    LOGGER.info("alert %d (%s %s) delivered on attempt %d", claim.id, claim.channel, claim.kind, claim.attempt)


def dispatch_channel(factory: sessionmaker[Session], settings: Settings, channel: str,
                     now: dt.datetime | None = None, budget_seconds: float = CHANNEL_BUDGET_SECONDS,
                     stop: Callable[[], bool] | None = None) -> int:
    """Send the due rows of one channel; return how many were delivered.

    The pass takes no new row after ``budget_seconds`` or once ``stop()`` is true (daemon shutdown).
    With ``now`` given (simulated time) each row is tried at most once per pass; in real time a row
    whose backoff ends during the pass is tried again in it.
    """
    lease = claim_lease_seconds(settings, channel)
    deadline = time.monotonic() + budget_seconds
    delivered = 0
    while time.monotonic() < deadline and not (stop is not None and stop()):
        at = now or utcnow()  # real time: rows queued during the pass are taken too
        try:
            with transaction(factory) as session:
                claim = claim_next(session, channel, at, lease)
                if claim is None:
                    break
                reason = cancel_reason(session, settings, claim)
                if reason is not None:
                    cancel(session, claim, reason)
        except SQLAlchemyError as exc:
            LOGGER.warning("dispatcher (%s): the database is unavailable (%s); retrying later",
                           channel, type(exc).__name__)
            break
        if reason is not None:
            metrics.CANCELLED.labels(channel).inc()
            LOGGER.info("alert %d (%s %s) cancelled: %s", claim.id, channel, claim.kind, reason)
            continue
        try:
            delivered += _attempt(factory, settings, claim, at, simulated=now is not None)
        except SQLAlchemyError as exc:  # the outcome could not be written: the claim's lease brings it back
            LOGGER.warning("dispatcher (%s): could not record the outcome of alert %d (%s)",
                           channel, claim.id, type(exc).__name__)
            break
    return delivered


def dispatch_due(factory: sessionmaker[Session], settings: Settings, now: dt.datetime | None = None,
                 channels: Iterable[str] | None = None, stop: Callable[[], bool] | None = None) -> int:
    """Send every due ``pending`` outbox row, the channels in parallel; return how many were delivered.

    Parameters
    ----------
    factory
        Session factory of the database that holds the outbox.
    settings
        Channel configuration and the retry policy (``settings.alerts``).
    now
        The time to treat as now (rows due at or before it are sent; retries are scheduled from it).
        Tests pass it to step through backoff without waiting; the scheduler leaves it out.
    channels
        Only these channels (default: all).
    stop
        Checked before each row: once it returns true, no new row is taken (the scheduler's shutdown).
    """
    chosen = tuple(channels) if channels is not None else ALL_CHANNELS
    if len(chosen) == 1:
        return dispatch_channel(factory, settings, chosen[0], now, stop=stop)
    with ThreadPoolExecutor(max_workers=len(chosen), thread_name_prefix="alerts") as pool:
        futures = [pool.submit(dispatch_channel, factory, settings, channel, now, stop=stop) for channel in chosen]
        return sum(future.result() for future in futures)


class AlertService:
    """Registers the dispatcher's scheduler jobs: one dispatch job per channel, one escalation check."""

    name = "alerts"

    def __init__(self, settings: Settings, factory: sessionmaker[Session], scheduler: BaseScheduler) -> None:
        self.settings = settings
        self.factory = factory
        self.scheduler = scheduler
        self.job_ids: list[str] = []

    def start(self) -> None:
        """Add the jobs (stable ids ``alerts.dispatch.<channel>`` and ``alerts.escalate``)."""
        from triage.alerts.escalation import escalate_due

        every = self.settings.alerts.dispatch_seconds
        for channel in ALL_CHANNELS:
            self._add(f"alerts.dispatch.{channel}", dispatch_due, every,
                      factory=self.factory, settings=self.settings, channels=(channel,), stop=self._stopping)
        minutes = self.settings.alerts.escalate_after_minutes
        check = max(1.0, min(ESCALATION_CHECK_SECONDS, minutes * 60.0 / 4)) if minutes else ESCALATION_CHECK_SECONDS
        self._add("alerts.escalate", escalate_due, check, factory=self.factory, settings=self.settings)
        event.listen(self.factory, "after_commit", self._after_commit)
        event.listen(self.factory, "after_rollback", self._after_rollback)
        configured = sorted(configured_channels(self.settings))
        LOGGER.info("alert channels configured: %s", ", ".join(configured) or "none (alerts stay in the outbox)")
        if "webhook" in configured and not self.settings.alerts.webhook.secret:
            LOGGER.warning("alerts.webhook.secret is empty: webhooks are sent unsigned")

    def _add(self, job_id: str, func: object, seconds: float, **kwargs: object) -> None:
        self.scheduler.add_job(func, "interval", seconds=seconds, id=job_id, name=job_id, kwargs=kwargs,
                               replace_existing=True, coalesce=True, max_instances=1)
        self.job_ids.append(job_id)

    def _after_commit(self, session: Session) -> None:
        for channel in session.info.pop(ENQUEUED, ()):
            job = self.scheduler.get_job(f"alerts.dispatch.{channel}")
            if job is not None and self.scheduler.state != STATE_STOPPED:
                job.modify(next_run_time=utcnow())

    @staticmethod
    def _after_rollback(session: Session) -> None:
        session.info.pop(ENQUEUED, None)

    def _stopping(self) -> bool:
        return bool(self.scheduler.state == STATE_STOPPED)

    def stop(self) -> None:
        """Remove the jobs (a pass in progress finishes its current row; nothing sent is lost)."""
        for name, hook in (("after_commit", self._after_commit), ("after_rollback", self._after_rollback)):
            if event.contains(self.factory, name, hook):
                event.remove(self.factory, name, hook)
        for job_id in self.job_ids:
            try:
                self.scheduler.remove_job(job_id)
            except JobLookupError:
                pass
        self.job_ids.clear()
