"""The admin page: thresholds and their effect, channels, allowed AEs, users, tokens, alerts, audit log."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.web import factories as f
from tests.web.conftest import Browser, login
from triage.config import Settings
from triage.db.admin import ALERT_CHANNELS, ALLOWED_AETS, get_admin_setting
from triage.db.engine import transaction
from triage.db.models import Alert, ApiToken, AuditEvent, User
from triage.db.thresholds import load_thresholds
from triage.domain import CLASSES


def _form(values: dict[str, float], off: tuple[str, ...] = ()) -> dict[str, str]:
    data = {f"threshold_{c}": str(values.get(c, 0.5)) for c in CLASSES}
    data.update({f"enabled_{c}": "1" for c in CLASSES if c not in off})
    return data


def _events(factory: sessionmaker[Session], action: str) -> list[AuditEvent]:
    with factory() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def test_thresholds_are_saved_with_audit(admin: Browser, factory) -> None:
    response = admin.form("/admin/thresholds", _form({"any": 0.35, "subdural": 0.4}, off=("epidural",)))
    assert response.status_code == 303 and response.headers["location"].startswith("/admin?saved=thresholds")
    with factory() as s:
        values, enabled = load_thresholds(s)
    assert values["any"] == 0.35 and values["subdural"] == 0.4 and values["epidural"] == 0.5
    assert enabled["epidural"] is False and enabled["any"] is True
    events = _events(factory, "threshold.change")
    assert [(e.actor, e.target) for e in events] == [("boss", "any"), ("boss", "epidural"), ("boss", "subdural")]
    assert events[0].detail == {"old": {"threshold": 0.5, "alert_enabled": True},
                                "new": {"threshold": 0.35, "alert_enabled": True}}
    page = admin.client.get("/admin?saved=thresholds").text
    assert "Thresholds saved" in page and 'value="0.35"' in page
    admin.form("/admin/thresholds", _form({"any": 0.35, "subdural": 0.4}, off=("epidural",)))
    assert len(_events(factory, "threshold.change")) == 3, "saving unchanged values writes no audit rows"


def test_invalid_threshold_changes_nothing(admin: Browser, factory) -> None:
    for bad in ("1.5", "abc", "-0.1", "nan", ""):
        data = _form({"any": 0.2})
        data["threshold_subdural"] = bad
        response = admin.form("/admin/thresholds", data)
        assert response.status_code == 400, bad
        text = html.unescape(response.text)
        assert f"threshold for subdural {bad!r}" in text and "Nothing was changed" in text
    with factory() as s:
        assert load_thresholds(s)[0]["any"] == 0.5
    assert _events(factory, "threshold.change") == []


def test_threshold_effect_counts_recent_studies(admin: Browser, factory) -> None:
    with transaction(factory) as s:
        for p_any, p_sdh in [(0.95, 0.9), (0.6, 0.1), (0.45, 0.4), (0.2, 0.0), (0.05, 0.0)]:
            f.classified(s, f.probabilities(p_any, subdural=p_sdh))
        f.classified(s, f.probabilities(0.99), minutes_ago=60 * 24 * 40)  # outside the 30 days
        f.study(s)  # not classified: not counted
    effect = admin.client.get("/api/admin/threshold-effect").json()
    assert effect["studies"] == 5 and effect["flagged"] == 2 and effect["currently_flagged"] == 2
    assert effect["per_class"]["any"] == 2 and effect["per_class"]["subdural"] == 1
    lower = admin.client.get("/api/admin/threshold-effect", params={"any": 0.3, "subdural": 0.35}).json()
    assert lower["per_class"]["any"] == 3 and lower["per_class"]["subdural"] == 2 and lower["flagged"] == 3
    off = admin.client.get("/api/admin/threshold-effect", params={"any": 0.3, "disabled": "any,subdural"}).json()
    assert off["flagged"] == 0 and off["per_class"]["any"] == 3
    none_off = admin.client.get("/api/admin/threshold-effect", params={"disabled": ""}).json()
    assert none_off["flagged"] == 2
    longer = admin.client.get("/api/admin/threshold-effect", params={"days": 60}).json()
    assert longer["studies"] == 6
    assert admin.client.get("/api/admin/threshold-effect", params={"any": 2}).status_code == 422
    assert admin.client.get("/api/admin/threshold-effect", params={"disabled": "bleed"}).status_code == 422
    page = admin.client.get("/admin").text
    assert re.search(r'<span class="effect" data-class="any">2</span> / <span class="effect-total">5</span>', page)
    assert '<strong id="effect-flagged">2</strong>' in page


def test_alert_channel_switches(admin: Browser, factory, web_settings: Settings) -> None:
    page = admin.client.get("/admin").text
    assert page.count('name="channel_') == 3 and "not configured" in page
    response = admin.form("/admin/channels", {"channel_webhook": "1", "channel_dicom": "1"})
    assert response.status_code == 303
    with factory() as s:
        assert get_admin_setting(s, ALERT_CHANNELS) == {"webhook": True, "email": False, "dicom": True}
    (event,) = _events(factory, "setting.change")
    assert event.actor == "boss" and event.target == ALERT_CHANNELS


def test_channel_targets_hide_secrets(admin: Browser, factory, web_settings: Settings) -> None:
    from triage.web.admin_ops import channel_configuration

    settings = web_settings.model_copy(deep=True)
    settings.alerts.webhook.url = "https://user:pw@hooks.example.org/ich?key=abc"
    settings.alerts.smtp.host = "smtp.example.org"
    settings.alerts.smtp.recipients = ["a@example.org", "b@example.org"]
    settings.alerts.smtp.password = "hunter2hunter2"
    targets = channel_configuration(settings)
    assert targets["webhook"] == "https://hooks.example.org/ich"
    assert targets["email"] == "smtp.example.org:25, 2 recipient(s)"
    assert targets["dicom"] == ""
    assert "pw" not in targets["webhook"] and "abc" not in targets["webhook"]


def test_allowed_aets(admin: Browser, factory) -> None:
    assert admin.form("/admin/aets", {"allowed_aets": "CT_SCANNER_1\nPACS, CT_SCANNER_1\n"}).status_code == 303
    with factory() as s:
        assert get_admin_setting(s, ALLOWED_AETS) == ["CT_SCANNER_1", "PACS"]
    bad = admin.form("/admin/aets", {"allowed_aets": "OK\nTHIS_TITLE_IS_TOO_LONG"})
    assert bad.status_code == 400 and "THIS_TITLE_IS_TOO_LONG" in bad.text
    bad = admin.form("/admin/aets", {"allowed_aets": "BACK\\SLASH"})
    assert bad.status_code == 400
    with factory() as s:
        assert get_admin_setting(s, ALLOWED_AETS) == ["CT_SCANNER_1", "PACS"]
    assert len(_events(factory, "setting.change")) == 1
    assert admin.form("/admin/aets", {"allowed_aets": ""}).status_code == 303
    with factory() as s:
        assert get_admin_setting(s, ALLOWED_AETS) == []


def test_user_management(admin: Browser, factory, app) -> None:
    assert admin.form("/admin/users", {"username": "newbie", "role": "radiologist",
                                       "password": "long enough"}).status_code == 303
    dup = admin.form("/admin/users", {"username": "newbie", "role": "admin", "password": "long enough"})
    assert dup.status_code == 400 and "already exists" in dup.text
    janitor = admin.form("/admin/users", {"username": "x", "role": "janitor", "password": "long enough"})
    assert janitor.status_code == 400
    assert admin.form("/admin/users/newbie", {"action": "role", "role": "admin"}).status_code == 303
    assert admin.form("/admin/users/newbie", {"action": "disable"}).status_code == 303
    with factory() as s:
        newbie = s.scalars(select(User).where(User.username == "newbie")).one()
        assert newbie.role == "admin" and newbie.disabled
    assert admin.form("/admin/users/newbie", {"action": "enable"}).status_code == 303
    assert admin.form("/admin/users/rad", {"action": "password", "password": "brand new pass"}).status_code == 303
    with TestClient(app) as other:
        login(other, "rad", "brand new pass")
    assert [e.action for e in _events(factory, "user.add")] == ["user.add"]
    actions = [e.action for e in _events(factory, "user.role") + _events(factory, "user.disable")
               + _events(factory, "user.enable") + _events(factory, "user.password")]
    assert actions == ["user.role", "user.disable", "user.enable", "user.password"]


def test_admins_cannot_lock_themselves_out(admin: Browser, factory) -> None:
    response = admin.form("/admin/users/boss", {"action": "disable"})
    assert response.status_code == 400 and "cannot disable yourself" in response.text
    response = admin.form("/admin/users/boss", {"action": "role", "role": "radiologist"})
    assert response.status_code == 400
    with transaction(factory) as s:
        f.user(s, "second", "admin")
    response = admin.form("/admin/users/second", {"action": "disable"})
    assert response.status_code == 303
    assert admin.form("/admin/users/nobody", {"action": "disable"}).status_code == 400
    assert admin.form("/admin/users/rad", {"action": "explode"}).status_code == 400
    short = admin.form("/admin/users/rad", {"action": "password", "password": "short"})
    assert short.status_code == 400 and "at least 8" in short.text
    with factory() as s:
        boss = s.scalars(select(User).where(User.username == "boss")).one()
        assert boss.role == "admin" and not boss.disabled


def test_tokens_issued_shown_once_and_revoked(admin: Browser, client: TestClient, factory) -> None:
    response = admin.form("/admin/tokens", {"username": "rad"})
    assert response.status_code == 200
    token = re.search(r'<code class="token" id="new-token">([^<]+)</code>', response.text).group(1)  # type: ignore[union-attr]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/worklist", headers=headers).status_code == 200
    page = admin.client.get("/admin").text
    assert token not in page
    with factory() as s:
        (row,) = s.scalars(select(ApiToken)).all()
    assert admin.form(f"/admin/tokens/{row.id}/revoke", {}).status_code == 303
    assert client.get("/api/worklist", headers=headers).status_code == 401
    assert admin.form(f"/admin/tokens/{row.id}/revoke", {}).status_code == 400
    assert admin.form("/admin/tokens", {"username": "gone"}).status_code == 400
    assert [e.action for e in _events(factory, "token.issue") + _events(factory, "token.revoke")] == [
        "token.issue", "token.revoke"]


def test_alert_outbox_and_audit_log(admin: Browser, factory) -> None:
    with transaction(factory) as s:
        parent = f.classified(s, f.probabilities(0.9))
        f.alert(s, parent, state="dead", channel="email", error="SMTP 554 relay denied")
        f.alert(s, parent, state="pending")
        f.alert(s, parent, state="sent")
    admin.form("/admin/channels", {"channel_webhook": "1"})
    page = admin.client.get("/admin").text
    assert "SMTP 554 relay denied" in page
    assert re.search(r'count-dead">dead <strong>1</strong>', page)
    assert re.search(r'count-pending">pending <strong>1</strong>', page)
    assert "setting.change" in page and "login" in page


def test_dead_alert_is_retried_from_the_admin_page(admin: Browser, factory) -> None:
    with transaction(factory) as s:
        parent = f.classified(s, f.probabilities(0.9))
        dead = f.alert(s, parent, state="dead", channel="email", error="SMTP 554 relay denied").id
        pending = f.alert(s, parent, state="pending").id
    page = admin.client.get("/admin").text
    assert f'action="/admin/alerts/{dead}/retry"' in page and f'action="/admin/alerts/{pending}/retry"' not in page
    response = admin.form(f"/admin/alerts/{dead}/retry", {})
    assert response.status_code == 303 and response.headers["location"].startswith("/admin?saved=alerts")
    with factory() as s:
        row = s.get(Alert, dead)
        assert row.state == "pending" and row.attempts == 0
    assert [(e.actor, e.detail["channel"]) for e in _events(factory, "alert.retry")] == [("boss", "email")]
    refused = admin.form(f"/admin/alerts/{pending}/retry", {})  # only dead or cancelled rows
    assert refused.status_code == 400 and "only dead or cancelled" in html.unescape(refused.text)
    assert len(_events(factory, "alert.retry")) == 1


def test_audit_log_pages(admin: Browser, factory) -> None:
    from triage.db.audit import audit

    with transaction(factory) as s:
        for i in range(60):
            audit(s, "robot", "test.event", f"t{i}")
    first = admin.client.get("/admin").text
    assert "older →" in first and "t59" in first and "t5<" not in first
    second = admin.client.get("/admin?audit_offset=50").text
    assert "← newer" in second and ">t5<" in second
