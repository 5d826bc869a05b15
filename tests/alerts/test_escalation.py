"""Escalation of unacknowledged alerts (triage.alerts.escalation.escalate_due)."""

from __future__ import annotations

import datetime as dt
import time

from sqlalchemy import select

from tests.alerts.conftest import add_case, outbox, rows, use_mail, use_webhook
from tests.helpers import wait_for
from triage.alerts.dispatcher import dispatch_due
from triage.alerts.escalation import escalate_due
from triage.db.engine import transaction
from triage.db.models import AuditEvent, Study, utcnow


def _alerted(factory, settings, webhook, mail):
    """A flagged study whose webhook and e-mail were delivered; returns it and the delivery time."""
    use_webhook(settings, webhook)
    use_mail(settings, mail)
    settings.alerts.escalation_channel = "email"
    settings.alerts.escalate_after_minutes = 10
    case = add_case(factory, settings, flagged=("any", "subdural"))
    now = utcnow()
    assert dispatch_due(factory, settings, now=now) == 2, outbox(factory)
    return case, now


def test_an_unacknowledged_alert_escalates_once_per_interval(factory, alert_settings, webhook, mail):
    case, start = _alerted(factory, alert_settings, webhook, mail)
    assert escalate_due(factory, alert_settings, now=start + dt.timedelta(minutes=9)) == 0
    at = start + dt.timedelta(minutes=10, seconds=1)
    assert escalate_due(factory, alert_settings, now=at) == 1
    assert escalate_due(factory, alert_settings, now=at + dt.timedelta(minutes=5)) == 0  # same interval
    assert dispatch_due(factory, alert_settings, now=at) == 1, outbox(factory)
    assert len(mail.messages) == 2
    message = mail.messages[-1]
    assert message["Subject"].startswith("[triage] ESCALATION")
    assert "Not acknowledged for 10.0 minutes (escalation 1)" in message.get_body(("plain",)).get_content()
    [row] = rows(factory, kind="escalation")
    assert row.payload["escalation"] == 1 and row.payload["study_uid"] == case.study_uid
    assert row.payload["subtypes"] == [{"name": "subdural", "probability": 0.9}]
    assert escalate_due(factory, alert_settings, now=start + dt.timedelta(minutes=20, seconds=1)) == 1
    with factory() as session:
        escalated = session.scalars(select(AuditEvent).where(AuditEvent.action == "alert.escalated")).all()
    assert [(e.actor, e.target, e.detail["escalation"]) for e in escalated] == [
        ("alerts", case.study_uid, 1), ("alerts", case.study_uid, 2)]


def test_escalations_stop_at_the_limit(factory, alert_settings, webhook, mail):
    _, start = _alerted(factory, alert_settings, webhook, mail)
    alert_settings.alerts.max_escalations = 2
    for minutes in (11, 21, 31, 41, 200):
        escalate_due(factory, alert_settings, now=start + dt.timedelta(minutes=minutes))
    assert [r.payload["escalation"] for r in rows(factory, kind="escalation")] == [1, 2]


def test_no_escalation_after_an_acknowledgement(factory, alert_settings, webhook, mail):
    case, start = _alerted(factory, alert_settings, webhook, mail)
    with transaction(factory) as session:
        study = session.get(Study, case.study_id)
        study.acknowledged_at = start + dt.timedelta(minutes=3)
        study.acknowledged_by = "dr.house"
    assert escalate_due(factory, alert_settings, now=start + dt.timedelta(minutes=30)) == 0
    assert rows(factory, kind="escalation") == []


def test_an_acknowledgement_before_sending_cancels_the_escalation(factory, alert_settings, webhook, mail):
    case, start = _alerted(factory, alert_settings, webhook, mail)
    at = start + dt.timedelta(minutes=11)
    assert escalate_due(factory, alert_settings, now=at) == 1
    with transaction(factory) as session:
        session.get(Study, case.study_id).acknowledged_at = at
    assert dispatch_due(factory, alert_settings, now=at) == 0, outbox(factory)
    [row] = rows(factory, kind="escalation")
    assert (row.state, row.last_error) == ("cancelled", "the study was acknowledged")
    assert len(mail.messages) == 1


def test_a_study_never_alerted_does_not_escalate(factory, alert_settings, webhook, mail):
    use_webhook(alert_settings, webhook)
    use_mail(alert_settings, mail)
    add_case(factory, alert_settings, flagged=("any",))  # queued but never delivered
    assert escalate_due(factory, alert_settings, now=utcnow() + dt.timedelta(hours=1)) == 0


def test_a_study_no_longer_flagged_does_not_escalate(factory, alert_settings, webhook, mail):
    case, start = _alerted(factory, alert_settings, webhook, mail)
    with transaction(factory) as session:
        session.get(Study, case.study_id).flagged = False
    assert escalate_due(factory, alert_settings, now=start + dt.timedelta(hours=1)) == 0


def test_no_escalation_when_switched_off(factory, alert_settings, webhook, mail):
    _, start = _alerted(factory, alert_settings, webhook, mail)
    alert_settings.alerts.escalate_after_minutes = 0
    assert escalate_due(factory, alert_settings, now=start + dt.timedelta(hours=1)) == 0


def test_escalation_after_a_short_real_delay(factory, alert_settings, webhook, mail):
    use_webhook(alert_settings, webhook)
    use_mail(alert_settings, mail)
    alert_settings.alerts.escalation_channel = "webhook"
    alert_settings.alerts.escalate_after_minutes = 0.01  # 0.6 s
    add_case(factory, alert_settings, flagged=("any",))
    assert dispatch_due(factory, alert_settings) == 2, outbox(factory)
    assert escalate_due(factory, alert_settings) == 0
    time.sleep(0.7)

    def escalated() -> bool:
        escalate_due(factory, alert_settings)
        dispatch_due(factory, alert_settings)
        return len(webhook.requests) == 2

    wait_for(escalated, timeout=10, interval=0.1)
    assert webhook.requests[-1].json["event"] == "escalation"
    assert webhook.requests[-1].headers["X-Triage-Event"] == "escalation"
