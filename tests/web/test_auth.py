"""Login, roles, CSRF, API tokens, rate limiting, security headers and the secret-key rule."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.web import factories as f
from tests.web.conftest import SECRET, Browser, login
from triage.config import Settings, load_settings
from triage.db.engine import transaction
from triage.db.models import ApiToken, AuditEvent, Study, User
from triage.errors import ConfigError, UsageError
from triage.web.app import create_app
from triage.web.users import add_user, hash_password, hash_token, issue_token, verify_password

UID = "1.2.3.4"
READ_API = ["/api/worklist", f"/api/studies/{UID}", "/api/key-images/1"]
WRITE_API = [f"/api/studies/{UID}/ack", f"/api/studies/{UID}/feedback"]
PAGES = ["/", f"/studies/{UID}", "/admin"]
FORMS = [f"/studies/{UID}/ack", f"/studies/{UID}/feedback", "/logout", "/admin/thresholds", "/admin/channels",
         "/admin/aets", "/admin/users", "/admin/users/rad", "/admin/tokens", "/admin/tokens/1/revoke"]
ADMIN_GET = ["/admin", "/api/admin/threshold-effect"]
ADMIN_POST = ["/admin/thresholds", "/admin/channels", "/admin/aets", "/admin/users", "/admin/users/rad",
              "/admin/tokens", "/admin/tokens/1/revoke"]


def _audit(factory: sessionmaker[Session], action: str) -> list[AuditEvent]:
    with factory() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action)))


# -- no login ---------------------------------------------------------------------------------------


def test_api_reads_need_a_login(client: TestClient) -> None:
    for path in READ_API + ["/api/admin/threshold-effect"]:
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        assert "detail" in response.json()


def test_api_writes_need_a_login(client: TestClient) -> None:
    for path in WRITE_API:
        assert client.post(path, json={"agree": True}).status_code == 401, path


def test_pages_redirect_to_login(client: TestClient) -> None:
    for path in PAGES:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == f"/login?next={path}"


def test_forms_need_a_login(client: TestClient) -> None:
    for path in FORMS:
        assert client.post(path, data={"csrf_token": "x"}, follow_redirects=False).status_code == 401, path


def test_health_and_metrics_need_no_login(client: TestClient) -> None:
    assert client.get("/api/health").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_no_patient_data_without_login(client: TestClient, factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        f.classified(s, f.probabilities(0.9), patient_name="SECRET^PATIENT", accession="ACC-SECRET")
    for path in ["/", "/api/worklist", "/login", "/metrics", "/api/health", "/openapi.json"]:
        text = client.get(path).text
        assert "SECRET^PATIENT" not in text and "ACC-SECRET" not in text, path


# -- roles --------------------------------------------------------------------------------------------


def test_radiologist_gets_403_on_admin_reads(radiologist: Browser) -> None:
    for path in ADMIN_GET:
        response = radiologist.client.get(path, headers={"Accept": "text/html"})
        assert response.status_code == 403, path
        assert "admin" in response.text


def test_radiologist_gets_403_on_admin_forms(radiologist: Browser, factory) -> None:
    for path in ADMIN_POST:
        response = radiologist.form(path, {"username": "x", "role": "admin", "password": "long enough!",
                                           "action": "disable", "threshold_any": "0.1"})
        assert response.status_code == 403, path
        assert "radiologist role may not" in response.json()["detail"]
    with factory() as s:
        assert s.scalars(select(User).where(User.username == "rad")).one().disabled is False
        assert s.scalars(select(User)).all().__len__() == 3


def test_admin_token_works_and_radiologist_token_gets_403(client: TestClient, token: str, admin_token: str) -> None:
    path = "/api/admin/threshold-effect"
    assert client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 403
    assert client.get(path, headers={"Authorization": f"Bearer {admin_token}"}).status_code == 200


def test_admin_may_read_everything(admin: Browser) -> None:
    for path in ["/", "/admin", "/api/worklist", "/api/admin/threshold-effect"]:
        assert admin.client.get(path).status_code == 200, path


# -- login / logout ------------------------------------------------------------------------------------


def test_login_success_sets_a_safe_cookie_and_audits(client: TestClient, people, factory) -> None:
    page = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    response = client.post("/login", data={"username": "rad", "password": f.PASSWORD, "csrf_token": csrf,
                                           "next": "/studies/1.2.3"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/studies/1.2.3"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax") and "Secure" not in cookie
    assert [e.actor for e in _audit(factory, "login")] == ["rad"]
    with factory() as s:
        assert s.scalars(select(User).where(User.username == "rad")).one().last_login_at is not None
    assert client.get("/").status_code == 200
    new_csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', client.get("/").text).group(1)  # type: ignore[union-attr]
    assert new_csrf != csrf, "the CSRF token is renewed at login"


def test_cookie_is_secure_over_https(app, people) -> None:
    with TestClient(app, base_url="https://testserver") as client:
        login(client, "rad")
        page = client.get("/")
        assert page.headers["strict-transport-security"].startswith("max-age=")
    with TestClient(app, base_url="https://testserver") as client:
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)  # type: ignore[union-attr]
        response = client.post("/login", data={"username": "rad", "password": f.PASSWORD, "csrf_token": csrf},
                               follow_redirects=False)
        assert "Secure" in response.headers["set-cookie"]


def test_login_failures(client: TestClient, people, factory) -> None:
    cases = [("rad", "wrong password"), ("nobody", f.PASSWORD), ("gone", f.PASSWORD), ("", "")]
    for name, password in cases:
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)  # type: ignore[union-attr]
        response = client.post("/login", data={"username": name, "password": password, "csrf_token": csrf})
        assert response.status_code == 401, name
        assert "Wrong user name or password" in response.text
        assert client.get("/", follow_redirects=False).status_code == 303
    assert len(_audit(factory, "login.failed")) == len(cases)


def test_login_needs_the_login_forms_csrf_token(client: TestClient, people) -> None:
    client.get("/login")
    response = client.post("/login", data={"username": "rad", "password": f.PASSWORD, "csrf_token": "forged"})
    assert response.status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 303


def test_login_is_rate_limited(client: TestClient, people, web_settings: Settings) -> None:
    limit = web_settings.web.login_attempts_per_minute
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)  # type: ignore[union-attr]
    codes = [client.post("/login", data={"username": "rad", "password": "nope nope", "csrf_token": csrf}).status_code
             for _ in range(limit)]
    assert codes == [401] * limit
    blocked = client.post("/login", data={"username": "rad", "password": f.PASSWORD, "csrf_token": csrf},
                          follow_redirects=False)
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert client.get("/", follow_redirects=False).status_code == 303


def test_open_redirect_is_refused(client: TestClient, people) -> None:
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)  # type: ignore[union-attr]
    for target in ["//evil.example/", "https://evil.example/", "/\\evil.example"]:
        response = client.post("/login", data={"username": "rad", "password": f.PASSWORD, "csrf_token": csrf,
                                               "next": target}, follow_redirects=False)
        assert response.headers["location"] == "/", target
        csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', client.get("/").text).group(1)  # type: ignore[union-attr]


def test_logout_ends_the_session(radiologist: Browser, factory) -> None:
    assert radiologist.form("/logout", {}).status_code == 303
    assert radiologist.client.get("/", follow_redirects=False).status_code == 303
    assert [e.actor for e in _audit(factory, "logout")] == ["rad"]


def test_disabling_a_user_ends_their_session(radiologist: Browser, factory) -> None:
    assert radiologist.client.get("/api/worklist").status_code == 200
    with transaction(factory) as s:
        s.scalars(select(User).where(User.username == "rad")).one().disabled = True
    assert radiologist.client.get("/api/worklist").status_code == 401


def test_forged_cookie_is_ignored(client: TestClient, people) -> None:
    client.cookies.set("triage_session", "eyJjIjoieCIsInUiOjJ9.forged.signature")
    assert client.get("/api/worklist").status_code == 401


# -- CSRF ---------------------------------------------------------------------------------------------


def test_api_ack_from_the_browser_needs_the_csrf_header(radiologist: Browser, factory) -> None:
    with transaction(factory) as s:
        uid = f.classified(s, f.probabilities(0.9)).study_uid
    client = radiologist.client
    assert client.post(f"/api/studies/{uid}/ack").status_code == 403
    assert client.post(f"/api/studies/{uid}/ack", headers={"X-CSRF-Token": "wrong"}).status_code == 403
    with factory() as s:
        assert s.scalars(select(Study)).one().acknowledged_at is None
    assert not _audit(factory, "study.ack")
    assert radiologist.post(f"/api/studies/{uid}/ack").status_code == 200


def test_forms_need_the_csrf_field(radiologist: Browser, admin: Browser, factory) -> None:
    with transaction(factory) as s:
        uid = f.classified(s, f.probabilities(0.9)).study_uid
    response = radiologist.client.post(f"/studies/{uid}/ack", data={"next": "/"}, follow_redirects=False)
    assert response.status_code == 403
    response = radiologist.client.post(f"/studies/{uid}/feedback", data={"agree": "yes", "csrf_token": "nope"})
    assert response.status_code == 403
    response = admin.client.post("/admin/thresholds", data={f"threshold_{c}": "0.1" for c in
                                                            ("any", "epidural", "intraparenchymal",
                                                             "intraventricular", "subarachnoid", "subdural")})
    assert response.status_code == 403
    with factory() as s:
        assert s.scalars(select(Study)).one().acknowledged_at is None
    assert not _audit(factory, "threshold.change") and not _audit(factory, "study.feedback")


def test_bearer_token_needs_no_csrf(client: TestClient, token: str, factory) -> None:
    with transaction(factory) as s:
        uid = f.classified(s, f.probabilities(0.9)).study_uid
    response = client.post(f"/api/studies/{uid}/ack", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.json()["acknowledged_by"] == "rad"


# -- tokens ---------------------------------------------------------------------------------------------


def test_tokens_are_stored_hashed_and_checked(client: TestClient, factory, people) -> None:
    value = issue_token(factory, "rad")
    assert value.startswith("trg_") and len(value) > 40
    with factory() as s:
        rows = s.scalars(select(ApiToken)).all()
        assert [r.token_hash for r in rows] == [hash_token(value)]
        assert value not in {r.token_hash for r in rows}
    assert client.get("/api/worklist", headers={"Authorization": f"Bearer {value}"}).status_code == 200
    with factory() as s:
        assert s.scalars(select(ApiToken)).one().last_used_at is not None
    assert client.get("/api/worklist", headers={"Authorization": f"Bearer {value}x"}).status_code == 401
    assert client.get("/api/worklist", headers={"Authorization": "Basic cmFkOnJhZA=="}).status_code == 401
    with transaction(factory) as s:
        s.scalars(select(User).where(User.username == "rad")).one().disabled = True
    assert client.get("/api/worklist", headers={"Authorization": f"Bearer {value}"}).status_code == 401


def test_issue_token_errors(factory, people) -> None:
    with pytest.raises(UsageError, match="'ghost'"):
        issue_token(factory, "ghost")
    with pytest.raises(UsageError, match="disabled"):
        issue_token(factory, "gone")
    assert [e.action for e in _audit(factory, "token.issue")] == []


# -- users and passwords --------------------------------------------------------------------------------


def test_password_hashes_are_salted_scrypt() -> None:
    first, second = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert first.startswith("scrypt$") and first != second
    assert verify_password("s3cret-pass", first) and verify_password("s3cret-pass", second)
    assert not verify_password("s3cret-pasS", first)
    assert not verify_password("anything", "md5$abc") and not verify_password("anything", "garbage")


def test_add_user_validates_and_audits(factory) -> None:
    add_user(factory, "dr.who@ward-7", "radiologist", "longenough")
    with pytest.raises(UsageError, match="already exists"):
        add_user(factory, "dr.who@ward-7", "admin", "longenough")
    with pytest.raises(UsageError, match="'janitor'"):
        add_user(factory, "bob", "janitor", "longenough")
    with pytest.raises(UsageError, match="at least 8"):
        add_user(factory, "bob", "admin", "short")
    with pytest.raises(UsageError, match="invalid user name"):
        add_user(factory, "../etc", "admin", "longenough")
    with factory() as s:
        users = s.scalars(select(User)).all()
        assert [(u.username, u.role) for u in users] == [("dr.who@ward-7", "radiologist")]
        assert verify_password("longenough", users[0].password_hash)
    assert [(e.actor, e.target) for e in _audit(factory, "user.add")] == [("cli", "dr.who@ward-7")]


# -- headers ------------------------------------------------------------------------------------------------


def test_security_headers(radiologist: Browser, factory) -> None:
    with transaction(factory) as s:
        uid = f.classified(s, f.probabilities(0.9), n_slices=5).study_uid
    for path in ["/", f"/studies/{uid}", "/api/worklist", f"/api/studies/{uid}", "/login"]:
        response = radiologist.client.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store", path
        assert response.headers["x-content-type-options"] == "nosniff"
    static = radiologist.client.get("/static/app.css")
    assert static.status_code == 200 and "no-store" not in static.headers["cache-control"]


def test_pages_have_no_inline_script_or_style(radiologist: Browser, admin: Browser, factory) -> None:
    with transaction(factory) as s:
        uid = f.classified(s, f.probabilities(0.9, subdural=0.8), n_slices=8).study_uid
    pages = [radiologist.client.get(p).text for p in ["/", f"/studies/{uid}"]]
    pages += [admin.client.get("/admin").text, TestClient(admin.client.app).get("/login").text]
    for html in pages:
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
        assert not re.search(r"\son[a-z]+=", html)
        assert " style=" not in html


# -- configuration --------------------------------------------------------------------------------------


def test_secret_key_is_required_outside_demo_mode(settings: Settings, factory) -> None:
    with pytest.raises(ConfigError, match="web.secret_key.*required outside demo mode"):
        create_app(settings, factory)
    short = load_settings(data_dir=settings.data_dir, database_url=settings.database_url,
                          web={"secret_key": "short"})
    with pytest.raises(ConfigError, match="at least 16") as info:
        create_app(short, factory)
    assert "short" not in str(info.value)
    demo = load_settings(data_dir=settings.data_dir, database_url=settings.database_url, demo=True)
    with TestClient(create_app(demo, factory)) as client:
        assert client.get("/api/health").status_code == 200
    ok = load_settings(data_dir=settings.data_dir, database_url=settings.database_url, web={"secret_key": SECRET})
    assert create_app(ok, factory) is not None


def test_first_start_without_users_says_how_to_create_one(app, caplog: pytest.LogCaptureFixture, factory) -> None:
    with caplog.at_level(logging.WARNING, logger="triage.web.app"), TestClient(app):
        pass
    assert "triage user add NAME --role admin" in caplog.text
    caplog.clear()
    add_user(factory, "first", "admin", "longenough")
    with caplog.at_level(logging.WARNING, logger="triage.web.app"), TestClient(app):
        pass
    assert "triage user add" not in caplog.text
