"""Escalation: a flagged study alerted but not acknowledged in time is announced again on the escalation channel."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from triage.alerts import metrics
from triage.config import Settings
from triage.db.engine import transaction
from triage.db.models import utcnow
from triage.db.outbox import enqueue_escalations

LOGGER = logging.getLogger(__name__)


def escalate_due(factory: sessionmaker[Session], settings: Settings, now: dt.datetime | None = None) -> int:
    """Add the escalation rows that are due; return how many were added.

    A study escalates when it is flagged, its first alert was delivered (``studies.alerted_at``) at
    least ``alerts.escalate_after_minutes`` ago and nobody acknowledged it (``studies.acknowledged_at``).
    Escalation ``n`` is due after ``n`` such intervals, at most ``alerts.max_escalations`` of them; the
    rows go to ``alerts.escalation_channel`` and are sent by the dispatcher (an acknowledgement
    that comes first cancels them). Each escalation is audited (``alert.escalated``).

    Parameters
    ----------
    factory
        Session factory of the database that holds the outbox.
    settings
        ``settings.alerts`` (delay, channel, limit).
    now
        The time to treat as now (tests); default: the current time.
    """
    at = now or utcnow()
    try:
        with transaction(factory) as session:
            added = enqueue_escalations(session, settings, at)
            summary = [(alert.id, alert.channel) for alert in added]
    except SQLAlchemyError as exc:
        LOGGER.warning("escalation check skipped: the database is unavailable (%s)", type(exc).__name__)
        return 0
    for alert_id, channel in summary:
        metrics.ESCALATED.labels(channel).inc()
        LOGGER.warning("alert %d: escalation of an unacknowledged flagged study on %s", alert_id, channel)
    return len(summary)
