"""Which outbox rows a result adds (triage.db.outbox.enqueue_alerts), and the dispatcher's claims."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from tests.alerts.conftest import add_case, rows, set_result, write_result
from triage.db.admin import ALERT_CHANNELS, set_admin_setting
from triage.db.engine import create_db_engine, session_factory, transaction
from triage.db.models import AuditEvent, utcnow
from triage.db.outbox import claim_next, dead_alerts, record_failure, retry_alert


@pytest.fixture
def configured(alert_settings):
    """Webhook, e-mail and DICOM configured (nothing is sent in these tests)."""
    alert_settings.alerts.webhook.url = "http://127.0.0.1:9/hook"
    alert_settings.alerts.smtp.host = "127.0.0.1"
    alert_settings.alerts.smtp.sender = "triage@example.org"
    alert_settings.alerts.smtp.recipients = ["oncall@example.org"]
    alert_settings.alerts.dicom.ae_title = "PACS"
    alert_settings.alerts.dicom.host = "127.0.0.1"
    return alert_settings


def test_flagged_final_result_adds_webhook_email_and_report(factory, configured):
    case = add_case(factory, configured, flagged=("any", "subdural"))
    added = rows(factory)
    assert sorted((a.channel, a.kind) for a in added) == [("dicom", "report"), ("email", "alert"), ("webhook", "alert")]
    hook = rows(factory, channel="webhook")[0]
    payload = hook.payload
    assert payload["study_uid"] == case.study_uid
    assert payload["accession_number"] == "ACC-1001"
    assert payload["priority"] == "critical"
    assert payload["subtypes"] == [{"name": "subdural", "probability": 0.9}]
    assert payload["key_instance_uid"] == case.sop_uids[0]
    assert payload["study_url"] == f"https://triage.example.org/studies/{case.study_uid}"
    assert payload["model_version"] == "m1"
    assert payload["timestamps"]["created_at"].endswith("+00:00")
    assert "patient" not in payload and "study_description" not in payload
    assert all(a.state == "pending" and a.attempts == 0 for a in added)


def test_unflagged_final_result_only_reports_to_the_pacs(factory, configured):
    add_case(factory, configured, flagged=())
    assert [(a.channel, a.kind) for a in rows(factory)] == [("dicom", "report")]


def test_nothing_is_added_for_unconfigured_channels(factory, alert_settings):
    add_case(factory, alert_settings, flagged=("any",))
    assert rows(factory) == []


def test_admin_switch_turns_a_channel_off(factory, configured):
    with transaction(factory) as session:
        set_admin_setting(session, ALERT_CHANNELS, {"email": False, "dicom": False}, actor="admin")
    add_case(factory, configured, flagged=("any",))
    assert [a.channel for a in rows(factory)] == ["webhook"]


def test_provisional_flag_alerts_once_and_the_final_result_does_not_repeat_it(factory, configured):
    case = add_case(factory, configured, flagged=("any", "subdural"), provisional=True)
    assert sorted(a.channel for a in rows(factory)) == ["email", "webhook"]  # no report for a provisional result
    assert rows(factory, channel="webhook")[0].payload["provisional"] is True
    set_result(factory, configured, case, flagged=("any", "subdural"))
    set_result(factory, configured, case, flagged=("any", "subdural"))  # repeated: a no-op
    assert sorted((a.channel, a.kind) for a in rows(factory)) == [
        ("dicom", "report"), ("email", "alert"), ("webhook", "alert")]


def test_a_subtype_added_by_the_final_result_is_an_update(factory, configured):
    case = add_case(factory, configured, flagged=("any", "subdural"), provisional=True)
    set_result(factory, configured, case, flagged=("any", "subdural", "subarachnoid"))
    update = rows(factory, channel="webhook", kind="update")
    assert len(update) == 1
    assert update[0].payload["flagged_classes"] == ["any", "subarachnoid", "subdural"]
    assert update[0].payload["event"] == "update"
    set_result(factory, configured, case, flagged=("any", "subdural", "subarachnoid"))
    assert len(rows(factory, channel="webhook", kind="update")) == 1


def test_a_new_model_that_flags_a_clear_study_alerts_and_a_clearing_model_retracts(factory, configured):
    case = add_case(factory, configured, flagged=(), model_version="m1")
    assert rows(factory, channel="webhook") == []
    set_result(factory, configured, case, flagged=("any", "epidural"), model_version="m2")
    assert [a.kind for a in rows(factory, channel="webhook")] == ["alert"]
    set_result(factory, configured, case, flagged=(), model_version="m3")
    assert [a.kind for a in rows(factory, channel="webhook")] == ["alert", "retract"]
    set_result(factory, configured, case, flagged=("any",), model_version="m4")
    kinds = [a.kind for a in rows(factory, channel="webhook")]
    assert kinds == ["alert", "retract", "alert"]
    reports = rows(factory, channel="dicom")
    assert [r.payload["model_version"] for r in reports] == ["m1", "m2", "m3", "m4"]


def test_a_provisional_result_never_retracts(factory, configured):
    case = add_case(factory, configured, flagged=("any",), provisional=True)
    set_result(factory, configured, case, flagged=(), provisional=True)
    assert [a.kind for a in rows(factory, channel="webhook")] == ["alert"]


def test_email_payload_carries_only_the_allowed_patient_fields(factory, configured):
    configured.alerts.smtp.patient_fields = ["patient_name", "patient_id"]
    add_case(factory, configured, flagged=("any",))
    payload = rows(factory, channel="email")[0].payload
    assert payload["accession_number"] is None
    assert payload["patient"] == {"id": "PID-0042", "name": "Doe^Jane"}
    assert "patient" not in rows(factory, channel="webhook")[0].payload


def test_claim_takes_a_row_once_and_failures_end_dead_with_the_error(factory, configured):
    add_case(factory, configured, flagged=("any",))
    now = utcnow()
    with transaction(factory) as session:
        first = claim_next(session, "webhook", now, lease_seconds=60)
        again = claim_next(session, "webhook", now, lease_seconds=60)
    assert first is not None and first.attempt == 1 and again is None
    configured.alerts.max_attempts = 2
    with transaction(factory) as session:
        state = record_failure(session, first, "boom", max_attempts=2, retry_at=now)
    assert state == "pending"
    with transaction(factory) as session:
        second = claim_next(session, "webhook", now, lease_seconds=60)
        assert second is not None and second.attempt == 2
        assert record_failure(session, second, "boom again", max_attempts=2, retry_at=now) == "dead"
    with factory() as session:
        dead = dead_alerts(session)
        actions = [e.action for e in session.query(AuditEvent).order_by(AuditEvent.id)]
    assert [(d.channel, d.last_error) for d in dead] == [("webhook", "boom again")]
    assert actions.count("alert.failed") == 2 and actions.count("alert.dead") == 1
    with transaction(factory) as session:
        retried = retry_alert(session, dead[0].id, actor="admin")
        assert (retried.state, retried.attempts) == ("pending", 0)
    with transaction(factory) as session, pytest.raises(ValueError, match="only dead or cancelled"):
        retry_alert(session, dead[0].id, actor="admin")


def test_an_expired_claim_is_taken_again(factory, configured):
    add_case(factory, configured, flagged=("any",))
    now = utcnow()
    with transaction(factory) as session:
        assert claim_next(session, "webhook", now, lease_seconds=30) is not None
    with transaction(factory) as session:
        assert claim_next(session, "webhook", now + dt.timedelta(seconds=10), lease_seconds=30) is None
        retaken = claim_next(session, "webhook", now + dt.timedelta(seconds=31), lease_seconds=30)
    assert retaken is not None and retaken.attempt == 2


def test_notices_are_decided_on_the_whole_study(factory, configured):
    first = add_case(factory, configured, flagged=("any", "subdural"))
    second = add_case(factory, configured, flagged=("any", "epidural"), same_study_as=first)
    hooks = rows(factory, channel="webhook")
    assert [h.kind for h in hooks] == ["alert", "update"]
    assert hooks[1].payload["flagged_classes"] == ["any", "epidural", "subdural"]
    assert hooks[1].payload["series_uid"] == second.series_uid
    set_result(factory, configured, second, flagged=())  # the other series still flags the study
    assert [h.kind for h in rows(factory, channel="webhook")] == ["alert", "update"]
    set_result(factory, configured, first, flagged=())  # now nothing flags it any more
    assert [h.kind for h in rows(factory, channel="webhook")] == ["alert", "update", "retract"]
    assert len(rows(factory, channel="dicom")) == 4  # one report per final series result


def test_two_workers_finishing_two_series_of_a_study_at_once_alert_then_update(factory, configured, database_url):
    first = add_case(factory, configured, flagged=(), enqueue=False)
    second = add_case(factory, configured, flagged=(), enqueue=False, same_study_as=first)
    other_engine = create_db_engine(database_url)
    other = session_factory(other_engine)
    inserted, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def worker_a() -> None:
        try:
            with transaction(factory) as session:
                write_result(session, configured, first, flagged=("any", "subdural"))
                inserted.set()
                release.wait(20)  # hold the transaction open while B decides
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def worker_b() -> None:
        try:
            inserted.wait(20)
            with transaction(other) as session:
                write_result(session, configured, second, flagged=("any", "epidural"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker_a), threading.Thread(target=worker_b)]
    try:
        for thread in threads:
            thread.start()
        inserted.wait(20)
        time.sleep(0.5)  # B is now waiting on A (row lock on PostgreSQL, write lock on SQLite)
        release.set()
        for thread in threads:
            thread.join(30)
    finally:
        other_engine.dispose()
    assert errors == []
    hooks = rows(factory, channel="webhook")
    assert [h.kind for h in hooks] == ["alert", "update"]
    assert hooks[1].payload["flagged_classes"] == ["any", "epidural", "subdural"]
