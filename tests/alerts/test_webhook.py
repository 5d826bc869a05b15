"""The webhook channel against a real HTTP server: signature, retries with backoff, dead state."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from sqlalchemy import select

from tests.alerts.conftest import SECRET, add_case, outbox, rows, use_webhook
from triage.alerts.dispatcher import backoff_delay, dispatch_due
from triage.alerts.webhook import verify_signature
from triage.db.models import AuditEvent, Study, utcnow


def test_the_webhook_arrives_signed_with_its_idempotency_key(factory, alert_settings, webhook):
    use_webhook(alert_settings, webhook)
    case = add_case(factory, alert_settings, flagged=("any", "subdural"))
    assert dispatch_due(factory, alert_settings) == 1, outbox(factory)
    [request] = webhook.requests
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Triage-Signature"] == expected
    assert verify_signature(request.body, request.headers["X-Triage-Signature"], SECRET)
    assert not verify_signature(request.body + b" ", request.headers["X-Triage-Signature"], SECRET)
    assert not verify_signature(request.body, request.headers["X-Triage-Signature"], "other-secret")
    assert request.headers["X-Triage-Idempotency-Key"] == f"webhook:alert:{case.study_uid}:0"
    assert request.headers["Content-Type"].startswith("application/json")
    body = request.json
    assert body["study_uid"] == case.study_uid and body["event"] == "alert"
    assert body["subtypes"] == [{"name": "subdural", "probability": 0.9}]
    [row] = rows(factory, channel="webhook")
    assert (row.state, row.attempts, row.last_error) == ("sent", 1, None)
    with factory() as session:
        study = session.get(Study, case.study_id)
        assert study.alerted_at == row.sent_at
        sent = session.scalars(select(AuditEvent).where(AuditEvent.action == "alert.sent")).all()
    assert [(e.actor, e.target, e.detail["channel"], e.detail["status"]) for e in sent] == [
        ("alerts", case.study_uid, "webhook", 200)]
    assert dispatch_due(factory, alert_settings) == 0  # nothing is sent twice


def test_a_receiver_that_fails_twice_gets_the_alert_exactly_once_more(factory, alert_settings, webhook):
    use_webhook(alert_settings, webhook)
    webhook.statuses = [500, 500]
    add_case(factory, alert_settings, flagged=("any",))
    now = utcnow()
    assert dispatch_due(factory, alert_settings, now=now) == 0, outbox(factory)
    [row] = rows(factory, channel="webhook")
    delay = (row.next_attempt_at - now).total_seconds()
    assert 0.5 <= delay <= 1.0  # first backoff: base 1 s with equal jitter
    assert row.last_error == "DeliveryError: webhook answered HTTP 500: ok"
    assert dispatch_due(factory, alert_settings, now=now) == 0  # not due yet: nothing is sent
    assert len(webhook.requests) == 1
    now += dt.timedelta(seconds=1)
    assert dispatch_due(factory, alert_settings, now=now) == 0, outbox(factory)
    [row] = rows(factory, channel="webhook")
    assert 1.0 <= (row.next_attempt_at - now).total_seconds() <= 2.0  # second backoff: 2 s
    now += dt.timedelta(seconds=2)
    assert dispatch_due(factory, alert_settings, now=now) == 1, outbox(factory)
    now += dt.timedelta(seconds=60)
    assert dispatch_due(factory, alert_settings, now=now) == 0, outbox(factory)
    assert [r.status for r in webhook.requests] == [500, 500, 200]
    assert len(webhook.delivered()) == 1
    assert len({r.headers["X-Triage-Idempotency-Key"] for r in webhook.requests}) == 1
    [row] = rows(factory, channel="webhook")
    assert (row.state, row.attempts) == ("sent", 3)
    with factory() as session:
        actions = [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions.count("alert.failed") == 2 and actions.count("alert.sent") == 1


def test_a_receiver_that_never_recovers_leaves_the_alert_dead(factory, alert_settings, webhook):
    use_webhook(alert_settings, webhook)
    webhook.default = 503
    case = add_case(factory, alert_settings, flagged=("any",))
    now = utcnow()
    for _ in range(alert_settings.alerts.max_attempts + 2):
        dispatch_due(factory, alert_settings, now=now)
        now += dt.timedelta(seconds=alert_settings.alerts.max_backoff_seconds + 1)
    assert len(webhook.requests) == alert_settings.alerts.max_attempts
    [row] = rows(factory, channel="webhook")
    assert row.state == "dead" and row.attempts == alert_settings.alerts.max_attempts
    assert "HTTP 503" in row.last_error
    with factory() as session:
        dead = session.scalars(select(AuditEvent).where(AuditEvent.action == "alert.dead")).all()
        assert session.get(Study, case.study_id).alerted_at is None
    assert [(e.target, e.detail["attempts"]) for e in dead] == [(case.study_uid, 4)]


def test_an_unreachable_receiver_is_a_failure_not_a_crash(factory, alert_settings):
    from tests.helpers import free_port

    alert_settings.alerts.webhook.url = f"http://127.0.0.1:{free_port()}/hook"
    add_case(factory, alert_settings, flagged=("any",))
    assert dispatch_due(factory, alert_settings) == 0, outbox(factory)
    [row] = rows(factory, channel="webhook")
    assert row.state == "pending" and row.attempts == 1 and "ConnectError" in row.last_error


def test_backoff_grows_exponentially_up_to_the_cap_with_jitter():
    import random

    rng = random.Random(7)
    delays = [backoff_delay(n, 5.0, 60.0, rng) for n in range(1, 8)]
    caps = [5, 10, 20, 40, 60, 60, 60]
    assert all(cap / 2 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered
