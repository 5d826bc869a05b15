"""The dispatcher: channel isolation, concurrent dispatchers, cancellation, the scheduler jobs, metrics."""

from __future__ import annotations

import threading

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import REGISTRY

from tests.alerts.conftest import add_case, outbox, rows, use_mail, use_webhook
from tests.helpers import wait_for
from triage.alerts.dispatcher import AlertService, dispatch_due
from triage.daemon import build_scheduler
from triage.db.admin import ALERT_CHANNELS, set_admin_setting
from triage.db.engine import create_db_engine, session_factory, transaction
from triage.db.models import Study


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_hanging_webhook_does_not_hold_up_the_email(factory, alert_settings, webhook, mail):
    use_webhook(alert_settings, webhook)
    use_mail(alert_settings, mail)
    webhook.hold.set()  # the receiver accepts the request and does not answer
    add_case(factory, alert_settings, flagged=("any",))
    done = threading.Event()
    result: list[int] = []
    thread = threading.Thread(target=lambda: (result.append(dispatch_due(factory, alert_settings)), done.set()))
    thread.start()
    try:
        assert webhook.arrived.wait(10)
        wait_for(lambda: mail.messages, timeout=10)  # delivered while the webhook still hangs
        assert not done.is_set() and webhook.requests == []
        wait_for(lambda: rows(factory, channel="email")[0].state == "sent", timeout=10)
    finally:
        webhook.release.set()
        thread.join(30)
    assert result == [2]


def test_a_webhook_timeout_is_a_failure_and_the_email_still_goes(factory, alert_settings, webhook, mail):
    use_webhook(alert_settings, webhook)
    use_mail(alert_settings, mail)
    alert_settings.alerts.webhook.timeout_seconds = 0.3
    webhook.hold.set()
    add_case(factory, alert_settings, flagged=("any",))
    failed_before = _metric("triage_alerts_failed_total", channel="webhook")
    assert dispatch_due(factory, alert_settings) == 1, outbox(factory)
    webhook.release.set()
    hook = rows(factory, channel="webhook")[0]
    assert hook.state == "pending" and "timed out after 0.3 s" in hook.last_error
    assert rows(factory, channel="email")[0].state == "sent"
    assert _metric("triage_alerts_failed_total", channel="webhook") == failed_before + 1


def test_two_dispatchers_send_each_row_once(factory, alert_settings, webhook, database_url):
    use_webhook(alert_settings, webhook)
    for _ in range(12):
        add_case(factory, alert_settings, flagged=("any",), slices=1)
    other_engine = create_db_engine(database_url)
    other = session_factory(other_engine)
    counts: list[int] = []
    barrier = threading.Barrier(2)

    def run(f):
        barrier.wait()
        counts.append(dispatch_due(f, alert_settings, channels=("webhook",)))

    try:
        threads = [threading.Thread(target=run, args=(f,)) for f in (factory, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        other_engine.dispose()
    keys = [r.headers["X-Triage-Idempotency-Key"] for r in webhook.requests]
    assert len(keys) == 12 and len(set(keys)) == 12
    assert sum(counts) == 12
    assert all(r.state == "sent" and r.attempts == 1 for r in rows(factory, channel="webhook"))


def test_rows_of_a_channel_switched_off_are_cancelled(factory, alert_settings, webhook, mail):
    use_webhook(alert_settings, webhook)
    use_mail(alert_settings, mail)
    add_case(factory, alert_settings, flagged=("any",))
    with transaction(factory) as session:
        set_admin_setting(session, ALERT_CHANNELS, {"webhook": False}, actor="admin")
    assert dispatch_due(factory, alert_settings) == 1, outbox(factory)
    hook = rows(factory, channel="webhook")[0]
    assert (hook.state, hook.last_error) == ("cancelled", "the channel is switched off by the admin")
    assert webhook.requests == [] and len(mail.messages) == 1


def test_the_service_registers_stable_jobs_and_delivers_within_seconds(factory, alert_settings, webhook, mail):
    use_webhook(alert_settings, webhook)
    use_mail(alert_settings, mail)
    alert_settings.alerts.dispatch_seconds = 0.2
    scheduler = build_scheduler()
    service = AlertService(alert_settings, factory, scheduler)
    service.start()
    assert service.name == "alerts"
    assert sorted(job.id for job in scheduler.get_jobs()) == [
        "alerts.dispatch.dicom", "alerts.dispatch.email", "alerts.dispatch.webhook", "alerts.escalate"]
    sent_before = _metric("triage_alerts_sent_total", channel="webhook", kind="alert")
    observed_before = _metric("triage_alerts_time_to_alert_seconds_count", channel="webhook")
    scheduler.start()
    try:
        case = add_case(factory, alert_settings, flagged=("any", "subarachnoid"))
        wait_for(lambda: webhook.delivered() and mail.messages, timeout=20)
    finally:
        service.stop()
        scheduler.shutdown(wait=True)
    assert scheduler.get_jobs() == []
    with factory() as session:
        assert session.get(Study, case.study_id).alerted_at is not None
    assert _metric("triage_alerts_sent_total", channel="webhook", kind="alert") == sent_before + 1
    assert _metric("triage_alerts_time_to_alert_seconds_count", channel="webhook") == observed_before + 1


def test_stop_is_safe_twice_and_on_a_stopped_scheduler(factory, alert_settings):
    scheduler = BackgroundScheduler()
    service = AlertService(alert_settings, factory, scheduler)
    service.start()
    service.stop()
    service.stop()
    assert scheduler.get_jobs() == []


def test_a_pass_takes_no_row_once_asked_to_stop(factory, alert_settings, webhook):
    use_webhook(alert_settings, webhook)
    add_case(factory, alert_settings, flagged=("any",))
    assert dispatch_due(factory, alert_settings, stop=lambda: True) == 0
    assert webhook.requests == [] and rows(factory, channel="webhook")[0].attempts == 0
    assert dispatch_due(factory, alert_settings, stop=lambda: False) == 1


def test_a_commit_with_outbox_rows_wakes_the_dispatcher_at_once(factory, alert_settings, webhook):
    use_webhook(alert_settings, webhook)
    alert_settings.alerts.dispatch_seconds = 3600  # polling alone would wait an hour
    scheduler = build_scheduler()
    service = AlertService(alert_settings, factory, scheduler)
    service.start()
    scheduler.start()
    try:
        add_case(factory, alert_settings, flagged=("any",))
        wait_for(webhook.delivered, timeout=20)
    finally:
        service.stop()
        scheduler.shutdown(wait=True)
    with transaction(factory) as session:  # after stop, commits no longer touch the scheduler
        session.info["triage.alerts.enqueued"] = {"webhook"}
    assert len(webhook.requests) == 1
