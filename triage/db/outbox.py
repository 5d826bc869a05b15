"""The database side of the alert outbox: which rows a result adds, claiming due rows, recording outcomes.

Rows are written in the worker's transaction (:func:`enqueue_alerts`) and by the escalation job
(:func:`enqueue_escalations`); the dispatcher claims them one at a time (:func:`claim_next`) and records
what happened (:func:`record_success`, :func:`record_failure`, :func:`cancel`). Every row has an
idempotency key: inserting a key that exists already does nothing, so repeating a decision never
alerts twice. How the keys are built is documented in docs/alerts.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from triage.config import Settings
from triage.db.admin import ALERT_CHANNELS, get_admin_setting
from triage.db.audit import audit
from triage.db.engine import dialect_insert
from triage.db.models import Alert, Series, SeriesResult, Study, utcnow
from triage.domain import ANY, CLASSES, AlertChannel, AlertState

LOGGER = logging.getLogger(__name__)

ACTOR = "alerts"
PAYLOAD_SCHEMA = "triage.alert/1"
REPORT_SCHEMA = "triage.report/1"

#: Kinds of outbox rows. ``alert``/``update``/``retract`` tell people what the study's findings are;
#: ``escalation`` repeats an unacknowledged alert; ``report`` is the DICOM result for the PACS.
ALERT, UPDATE, RETRACT, ESCALATION, REPORT = "alert", "update", "retract", "escalation", "report"
NOTICE_KINDS = (ALERT, UPDATE, RETRACT)
NOTIFY_CHANNELS = (AlertChannel.WEBHOOK.value, AlertChannel.EMAIL.value)
ALL_CHANNELS = tuple(channel.value for channel in AlertChannel)
MAX_ERROR_CHARS = 2000
#: ``session.info`` key naming the channels that got rows in the session's transaction (the
#: dispatcher of the same process wakes up when it commits).
ENQUEUED = "triage.alerts.enqueued"


# -- channels ---------------------------------------------------------------------------------------


def configured_channels(settings: Settings) -> set[str]:
    """The channels whose settings are complete enough to send anything."""
    alerts = settings.alerts
    configured = set()
    if alerts.webhook.url:
        configured.add(AlertChannel.WEBHOOK.value)
    if alerts.smtp.host and alerts.smtp.sender and alerts.smtp.recipients:
        configured.add(AlertChannel.EMAIL.value)
    if alerts.dicom.ae_title and alerts.dicom.host:
        configured.add(AlertChannel.DICOM.value)
    return configured


def enabled_channels(session: Session, settings: Settings) -> set[str]:
    """Configured channels that the admin has not switched off (a missing switch counts as on)."""
    switches = get_admin_setting(session, ALERT_CHANNELS, {}) or {}
    return {name for name in configured_channels(settings) if switches.get(name, True) is not False}


# -- payloads ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyFindings:
    """Study-level view of the results: per class the maximum over its series."""

    probabilities: dict[str, float]
    flagged_classes: tuple[str, ...]
    key_instance_uid: str | None
    model_version: str
    provisional: bool


def study_findings(
    session: Session, study: Study, series: Series | None = None, result: SeriesResult | None = None
) -> StudyFindings:
    """Combine the results of every series of ``study``; ``result`` stands for ``series``' row.

    The other series' rows are read afresh (``populate_existing``): another worker may have committed
    a result since this transaction first looked.
    """
    query = select(SeriesResult).join(Series).where(Series.study_id == study.id)
    if series is not None:
        query = query.where(Series.id != series.id)
    with session.no_autoflush:
        rows = list(session.scalars(query.order_by(SeriesResult.id).execution_options(populate_existing=True)))
    if result is not None:
        rows.append(result)
    probabilities = {name: max((float(getattr(r, f"p_{name}")) for r in rows), default=0.0) for name in CLASSES}
    flagged = {name for r in rows if r.flagged for name in (r.flagged_classes or [])}
    top = max(rows, key=lambda r: float(r.p_any), default=None)
    return StudyFindings(
        probabilities=probabilities,
        flagged_classes=tuple(name for name in CLASSES if name in flagged),
        key_instance_uid=top.key_instance_uid if top is not None else None,
        model_version=top.model_version if top is not None else "",
        provisional=any(r.provisional for r in rows if r.flagged),
    )


def study_url(settings: Settings, study_uid: str) -> str:
    """The study page on the web UI (``web.base_url``, else the configured host and port)."""
    base = settings.web.base_url.rstrip("/") or f"http://{settings.web.host}:{settings.web.port}"
    return f"{base}/studies/{study_uid}"


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


def patient_part(study: Study, fields: Iterable[str]) -> dict[str, Any]:
    """Only the patient data the admin allows for a channel (``accession`` alone by default)."""
    allowed = set(fields)
    part: dict[str, Any] = {"accession_number": study.accession_number if "accession" in allowed else None}
    patient = {}
    if "patient_id" in allowed:
        patient["id"] = study.patient_id
    if "patient_name" in allowed:
        patient["name"] = study.patient_name
    if patient:
        part["patient"] = patient
    if "description" in allowed:
        part["study_description"] = study.study_description
    return part


def notice_payload(
    settings: Settings,
    channel: str,
    kind: str,
    key: str,
    study: Study,
    findings: StudyFindings,
    *,
    series: Series | None,
    now: dt.datetime,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of a webhook/e-mail row (schema ``triage.alert/1``, see docs/alerts.md)."""
    fields = settings.alerts.webhook.patient_fields if channel == "webhook" else settings.alerts.smtp.patient_fields
    subtypes = [name for name in findings.flagged_classes if name != ANY]
    payload: dict[str, Any] = {
        "schema": PAYLOAD_SCHEMA,
        "event": kind,
        "idempotency_key": key,
        "study_uid": study.study_uid,
        **patient_part(study, fields),
        "series_uid": series.series_uid if series is not None else None,
        "priority": "critical" if findings.flagged_classes else "routine",
        "flagged": bool(findings.flagged_classes),
        "flagged_classes": list(findings.flagged_classes),
        "subtypes": [{"name": name, "probability": round(findings.probabilities[name], 4)} for name in subtypes],
        "probabilities": {name: round(p, 4) for name, p in findings.probabilities.items()},
        "key_instance_uid": findings.key_instance_uid,
        "study_url": study_url(settings, study.study_uid),
        "model_version": findings.model_version,
        "provisional": findings.provisional,
        "timestamps": {
            "study_first_received_at": _iso(study.first_received_at),
            "series_last_received_at": _iso(series.last_received_at) if series is not None else None,
            "classified_at": _iso(study.classified_at),
            "created_at": _iso(now),
        },
    }
    payload.update(extra or {})
    return payload


def report_payload(
    settings: Settings, key: str, study: Study, series: Series, result: SeriesResult, now: dt.datetime
) -> dict[str, Any]:
    """What the DICOM channel needs to build the structured report of one final series result."""
    return {
        "schema": REPORT_SCHEMA,
        "event": REPORT,
        "idempotency_key": key,
        "study_uid": study.study_uid,
        "series_uid": series.series_uid,
        "accession_number": study.accession_number,
        "flagged": bool(result.flagged),
        "flagged_classes": list(result.flagged_classes or []),
        "probabilities": {name: float(getattr(result, f"p_{name}")) for name in CLASSES},
        "key_instance_uid": result.key_instance_uid,
        "model_version": result.model_version,
        "num_slices": result.num_slices,
        "study_url": study_url(settings, study.study_uid),
        "timestamps": {"classified_at": _iso(result.created_at), "created_at": _iso(now)},
    }


# -- inserting rows ---------------------------------------------------------------------------------


def digest(*parts: object) -> str:
    """A short stable hash of ``parts`` (for idempotency keys that must stay under 128 characters)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def insert_row(
    session: Session, study: Study, channel: str, kind: str, key: str, payload: dict[str, Any], now: dt.datetime
) -> Alert | None:
    """Insert one pending row unless its idempotency key exists already (then return None)."""
    values = {
        "study_id": study.id,
        "channel": channel,
        "kind": kind,
        "idempotency_key": key,
        "payload": payload,
        "state": AlertState.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    insert = dialect_insert(session)
    statement = (
        insert(Alert).values(**values).on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(Alert)
    )
    alert = session.scalars(statement).one_or_none()
    if alert is not None:
        session.info.setdefault(ENQUEUED, set()).add(channel)
    return alert


@dataclass(frozen=True)
class Told:
    """What the notices sent (or queued) so far on one channel asserted about a study."""

    generation: int  # how many retractions came before
    classes: frozenset[str] | None  # None: nothing asserted (never alerted, or retracted)


def told_so_far(session: Session, study_id: int, channel: str) -> Told:
    """Replay the study's notice rows on ``channel`` in order (cancelled and dead rows count too)."""
    rows = session.execute(
        select(Alert.kind, Alert.payload)
        .where(Alert.study_id == study_id, Alert.channel == channel, Alert.kind.in_(NOTICE_KINDS))
        .order_by(Alert.id)
    ).all()
    generation, classes = 0, None
    for kind, payload in rows:
        if kind == RETRACT:
            generation, classes = generation + 1, None
        else:
            classes = (classes or frozenset()) | frozenset(payload.get("flagged_classes", []))
    return Told(generation, classes)


def decide_notice(told: Told, desired: Sequence[str], provisional: bool, channel: str, study_uid: str
                  ) -> tuple[str, str] | None:
    """The (kind, idempotency key) of the notice to add, or None when people already know.

    - nothing told and the study is flagged: ``alert``;
    - flagged with a class that was not told yet (a subtype added by the final result, by another
      series, or by a reprocess with a new model): ``update`` naming all classes;
    - told flagged, and a final result leaves the study unflagged (e.g. a reprocess with a new model
      version or new thresholds): ``retract``; a later flag starts a new generation with a new ``alert``.
    """
    wanted = frozenset(desired)
    prefix = f"{channel}:%s:{study_uid}:{told.generation}"
    if wanted and told.classes is None:
        return ALERT, prefix % ALERT
    if wanted and told.classes is not None and wanted - told.classes:
        return UPDATE, f"{prefix % UPDATE}:{digest(sorted(wanted | told.classes))}"
    if not wanted and told.classes and not provisional:
        return RETRACT, prefix % RETRACT
    return None


def _enqueue_notice(
    session: Session, settings: Settings, channel: str, study: Study, series: Series, result: SeriesResult,
    now: dt.datetime, findings: StudyFindings,
) -> Alert | None:
    # Two workers may decide at once for two series of one study: the loser's insert does nothing,
    # and deciding again (the winner's row is visible by then) turns its findings into an update.
    for attempt in range(3):
        if attempt:
            findings = study_findings(session, study, series, result)
        told = told_so_far(session, study.id, channel)
        decision = decide_notice(told, findings.flagged_classes, bool(result.provisional), channel, study.study_uid)
        if decision is None:
            return None
        kind, key = decision
        payload = notice_payload(settings, channel, kind, key, study, findings, series=series, now=now)
        alert = insert_row(session, study, channel, kind, key, payload, now)
        if alert is not None:
            return alert
    return None


def enqueue_alerts(
    session: Session, settings: Settings, study: Study, series: Series, result: SeriesResult
) -> list[Alert]:
    """Add the outbox rows that ``result`` calls for, in ``session`` (the worker commits).

    Webhook and e-mail get a notice when the study is flagged (a provisional flag included: that is
    the fast alert of streaming mode), an update when a new class appears and a retraction when a
    final result clears the study; the DICOM channel gets a report for every final result. Only
    channels that are configured and not switched off by the admin get rows. Repeating a call with
    the same findings adds nothing (idempotency keys).

    Parameters
    ----------
    session
        The worker's session, inside the transaction that writes ``result``.
    settings
        Channel configuration (``settings.alerts``) and the web's base URL for links.
    study, series, result
        The series whose result was just written (already thresholded by the worker).

    Returns
    -------
    list of Alert
        The rows added (empty when nothing new needs saying).
    """
    now = utcnow()
    channels = enabled_channels(session, settings)
    added: list[Alert] = []
    notify = [channel for channel in NOTIFY_CHANNELS if channel in channels]
    if notify:
        findings = study_findings(session, study, series, result)
        for channel in notify:
            alert = _enqueue_notice(session, settings, channel, study, series, result, now, findings)
            if alert is not None:
                added.append(alert)
    if AlertChannel.DICOM.value in channels and not result.provisional and not result.error:
        alert = _enqueue_report(session, settings, study, series, result, now)
        if alert is not None:
            added.append(alert)
    for alert in added:
        LOGGER.debug("outbox: %s %s for study %s", alert.channel, alert.kind, study.study_uid)
    return added


def _enqueue_report(
    session: Session, settings: Settings, study: Study, series: Series, result: SeriesResult, now: dt.datetime
) -> Alert | None:
    probabilities = [round(float(getattr(result, f"p_{name}")), 4) for name in CLASSES]
    key = "dicom:report:{}:{}".format(
        series.series_uid,
        digest(result.model_version, result.num_slices, sorted(result.flagged_classes or []),
               result.key_instance_uid, probabilities),
    )
    payload = report_payload(settings, key, study, series, result, now)
    return insert_row(session, study, AlertChannel.DICOM.value, REPORT, key, payload, now)


def enqueue_escalations(session: Session, settings: Settings, now: dt.datetime) -> list[Alert]:
    """Add an escalation row for every flagged study alerted but not acknowledged in time.

    Escalation number ``n`` is due ``n`` intervals (``escalate_after_minutes``) after the first
    successful alert; its key names ``n``, so a study escalates at most once per interval and at most
    ``max_escalations`` times. An acknowledged or unflagged study never escalates.
    """
    alerts = settings.alerts
    channel = alerts.escalation_channel
    interval = alerts.escalate_after_minutes * 60.0
    if interval <= 0 or not channel or channel not in enabled_channels(session, settings):
        return []
    cutoff = now - dt.timedelta(seconds=interval)
    studies = session.scalars(
        select(Study)
        .where(
            Study.flagged.is_(True),
            Study.alerted_at.is_not(None),
            Study.alerted_at <= cutoff,
            Study.acknowledged_at.is_(None),
        )
        .order_by(Study.id)
    ).all()
    added = []
    for study in studies:
        assert study.alerted_at is not None  # noqa: S101 - filtered above
        waited = (now - study.alerted_at).total_seconds()
        number = int(waited // interval)
        if alerts.max_escalations:
            number = min(number, alerts.max_escalations)
        key = f"{channel}:{ESCALATION}:{study.study_uid}:{number}"
        extra = {"escalation": number, "alerted_at": _iso(study.alerted_at),
                 "unacknowledged_minutes": round(waited / 60.0, 1)}
        payload = notice_payload(settings, channel, ESCALATION, key, study, study_findings(session, study),
                                 series=None, now=now, extra=extra)
        alert = insert_row(session, study, channel, ESCALATION, key, payload, now)
        if alert is not None:
            audit(session, ACTOR, "alert.escalated", study.study_uid, alert_id=alert.id, channel=channel,
                  escalation=number)
            added.append(alert)
    return added


# -- dispatching ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A row taken by one dispatcher for one attempt (a plain snapshot, usable outside the session)."""

    id: int
    study_id: int
    channel: str
    kind: str
    idempotency_key: str
    payload: dict[str, Any]
    attempt: int


def claim_next(session: Session, channel: str, now: dt.datetime, lease_seconds: float) -> Claim | None:
    """Take the oldest due pending row of ``channel`` for one attempt, or return None.

    The claim pushes ``next_attempt_at`` past the lease and counts the attempt, so no other dispatcher
    takes the row while it is being sent; a dispatcher that dies leaves it to be retried when the
    lease ends. PostgreSQL skips rows locked by another claim (``FOR UPDATE SKIP LOCKED``); SQLite
    serialises writers (``BEGIN IMMEDIATE``) and the UPDATE is conditional on what was read.
    """
    row = session.execute(
        select(Alert.id, Alert.study_id, Alert.kind, Alert.idempotency_key, Alert.payload, Alert.attempts)
        .where(Alert.state == AlertState.PENDING.value, Alert.channel == channel, Alert.next_attempt_at <= now)
        .order_by(Alert.next_attempt_at, Alert.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if row is None:
        return None
    taken = session.execute(
        update(Alert)
        .where(Alert.id == row.id, Alert.state == AlertState.PENDING.value, Alert.attempts == row.attempts)
        .values(attempts=row.attempts + 1, next_attempt_at=now + dt.timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return Claim(row.id, row.study_id, channel, row.kind, row.idempotency_key, dict(row.payload), row.attempts + 1)


def cancel_reason(session: Session, settings: Settings, claim: Claim) -> str | None:
    """Why a claimed row must not be sent any more (channel off or unconfigured, study acknowledged)."""
    if claim.channel not in configured_channels(settings):
        return "the channel is no longer configured"
    if claim.channel not in enabled_channels(session, settings):
        return "the channel is switched off by the admin"
    if claim.kind == ESCALATION:
        study = session.get(Study, claim.study_id)
        if study is not None and study.acknowledged_at is not None:
            return "the study was acknowledged"
    return None


def _study_uid(session: Session, study_id: int) -> str:
    study = session.get(Study, study_id)
    return study.study_uid if study is not None else ""


def cancel(session: Session, claim: Claim, reason: str) -> None:
    """Mark a claimed row ``cancelled`` with the reason (audited)."""
    session.execute(
        update(Alert).where(Alert.id == claim.id, Alert.state == AlertState.PENDING.value)
        .values(state=AlertState.CANCELLED.value, last_error=reason)
        .execution_options(synchronize_session=False)
    )
    audit(session, ACTOR, "alert.cancelled", _study_uid(session, claim.study_id), alert_id=claim.id,
          channel=claim.channel, kind=claim.kind, reason=reason)


@dataclass(frozen=True)
class Delivered:
    """What the dispatcher needs for its metrics after a successful send."""

    first_alert: bool  # the study's first successful notice (studies.alerted_at was set now)
    series_last_received_at: dt.datetime | None
    study_first_received_at: dt.datetime | None


def record_success(session: Session, claim: Claim, now: dt.datetime, **detail: Any) -> Delivered:
    """Mark the row ``sent``, set ``studies.alerted_at`` at the first notice, audit the send."""
    session.execute(
        update(Alert).where(Alert.id == claim.id, Alert.state != AlertState.SENT.value)
        .values(state=AlertState.SENT.value, sent_at=now, last_error=None)
        .execution_options(synchronize_session=False)
    )
    study = session.get(Study, claim.study_id)
    first = False
    if study is not None and claim.kind in (ALERT, UPDATE) and study.alerted_at is None:
        study.alerted_at = now
        first = True
    series_uid = claim.payload.get("series_uid")
    series = session.scalar(select(Series).where(Series.series_uid == series_uid)) if series_uid else None
    audit(session, ACTOR, "alert.sent", study.study_uid if study is not None else "", alert_id=claim.id,
          channel=claim.channel, kind=claim.kind, attempt=claim.attempt, **detail)
    return Delivered(
        first_alert=first,
        series_last_received_at=series.last_received_at if series is not None else None,
        study_first_received_at=study.first_received_at if study is not None else None,
    )


def record_failure(
    session: Session, claim: Claim, error: str, *, max_attempts: int, retry_at: dt.datetime
) -> str:
    """Record a failed attempt: back to ``pending`` at ``retry_at``, or ``dead`` after ``max_attempts``.

    Returns the row's new state. Both outcomes are audited (``alert.failed``, then ``alert.dead``).
    """
    error = error[:MAX_ERROR_CHARS]
    dead = claim.attempt >= max_attempts
    values: dict[str, Any] = {"last_error": error}
    if dead:
        values["state"] = AlertState.DEAD.value
    else:
        values["next_attempt_at"] = retry_at
    session.execute(
        update(Alert).where(Alert.id == claim.id, Alert.state == AlertState.PENDING.value)
        .values(**values).execution_options(synchronize_session=False)
    )
    target = _study_uid(session, claim.study_id)
    audit(session, ACTOR, "alert.failed", target, alert_id=claim.id, channel=claim.channel, kind=claim.kind,
          attempt=claim.attempt, error=error)
    if dead:
        audit(session, ACTOR, "alert.dead", target, alert_id=claim.id, channel=claim.channel, kind=claim.kind,
              attempts=claim.attempt, error=error)
        return AlertState.DEAD.value
    return AlertState.PENDING.value


# -- for the admin page ---------------------------------------------------------------------------


def dead_alerts(session: Session, limit: int = 100) -> list[Alert]:
    """The rows the dispatcher gave up on, newest first (shown to the admin with their last error)."""
    return list(session.scalars(
        select(Alert).where(Alert.state == AlertState.DEAD.value).order_by(Alert.id.desc()).limit(limit)
    ))


def retry_alert(session: Session, alert_id: int, actor: str) -> Alert:
    """Put a ``dead`` or ``cancelled`` row back in the queue with fresh attempts (audited).

    Raises
    ------
    ValueError
        When the row does not exist or is not dead or cancelled.
    """
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise ValueError(f"no alert with id {alert_id!r}")
    if alert.state not in (AlertState.DEAD.value, AlertState.CANCELLED.value):
        raise ValueError(f"alert {alert_id} is {alert.state!r}: only dead or cancelled alerts can be retried")
    alert.state = AlertState.PENDING.value
    alert.attempts = 0
    alert.next_attempt_at = utcnow()
    audit(session, actor, "alert.retry", _study_uid(session, alert.study_id), alert_id=alert.id,
          channel=alert.channel, kind=alert.kind, last_error=alert.last_error)
    return alert

