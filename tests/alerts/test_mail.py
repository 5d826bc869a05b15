"""The e-mail channel against a real SMTP server (aiosmtpd): content, patient data, STARTTLS and login."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.alerts.conftest import add_case, outbox, rows, use_mail
from tests.alerts.receivers import MailSink, start_smtp
from triage.alerts.dispatcher import dispatch_due


def test_the_email_arrives_with_plain_and_html_parts_and_no_patient_name(factory, alert_settings, mail):
    use_mail(alert_settings, mail)
    case = add_case(factory, alert_settings, flagged=("any", "subdural", "intraparenchymal"))
    assert dispatch_due(factory, alert_settings) == 1, outbox(factory)
    [message] = mail.messages
    assert mail.envelopes == [("triage@example.org", ["oncall@example.org", "neuro@example.org"])]
    assert "Suspected intracranial hemorrhage" in message["Subject"]
    assert "ACC-1001" in message["Subject"]
    assert message["X-Triage-Idempotency-Key"] == f"email:alert:{case.study_uid}:0"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for part in (text, html):
        assert f"https://triage.example.org/studies/{case.study_uid}" in part
        assert "subdural" in part and "intraparenchymal" in part
        assert "Doe" not in part and "PID-0042" not in part
    assert "Findings: intraparenchymal 0.90, subdural 0.90" in text
    assert "<h2" in html
    assert rows(factory, channel="email")[0].state == "sent"


def test_patient_fields_allowed_by_the_admin_appear_and_html_is_escaped(factory, alert_settings, mail):
    use_mail(alert_settings, mail, patient_fields=["accession", "patient_name", "description"])
    add_case(factory, alert_settings, flagged=("any",), accession="<b>A&1</b>")
    dispatch_due(factory, alert_settings)
    [message] = mail.messages
    html = message.get_body(("html",)).get_content()
    assert "Doe^Jane" in message.get_body(("plain",)).get_content()
    assert "&lt;b&gt;A&amp;1&lt;/b&gt;" in html and "<b>A&1</b>" not in html
    assert "CT HEAD WO CONTRAST" in html


def _certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_mail(tmp_path):
    cert, key = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"pw", handled=False)

    sink = MailSink()
    controller = start_smtp(sink, tls_context=context, require_starttls=True, authenticator=authenticator,
                            auth_required=True, auth_exclude_mechanism=["LOGIN"])
    sink.port = controller.port  # type: ignore[attr-defined]
    yield sink, cert, logins
    controller.stop()


def test_starttls_and_login(factory, alert_settings, tls_mail):
    sink, cert, logins = tls_mail
    use_mail(alert_settings, sink, starttls=True, tls_ca=str(cert), username="triage", password="pw")
    add_case(factory, alert_settings, flagged=("any",))
    assert dispatch_due(factory, alert_settings) == 1, outbox(factory)
    assert len(sink.messages) == 1 and logins == [(b"triage", b"pw")]


def test_a_wrong_password_is_a_failure_with_the_reason(factory, alert_settings, tls_mail):
    sink, cert, _ = tls_mail
    use_mail(alert_settings, sink, starttls=True, tls_ca=str(cert), username="triage", password="wrong")
    add_case(factory, alert_settings, flagged=("any",))
    assert dispatch_due(factory, alert_settings) == 0, outbox(factory)
    [row] = rows(factory, channel="email")
    assert row.state == "pending" and "SMTPAuthenticationError" in row.last_error
    assert sink.messages == []


def test_an_untrusted_certificate_is_refused(factory, alert_settings, tls_mail):
    sink, _, _ = tls_mail
    use_mail(alert_settings, sink, starttls=True, username="triage", password="pw")
    add_case(factory, alert_settings, flagged=("any",))
    assert dispatch_due(factory, alert_settings) == 0, outbox(factory)
    assert "SSLCertVerificationError" in rows(factory, channel="email")[0].last_error
    assert sink.messages == []


def test_a_long_idempotency_key_is_not_folded():
    from email import message_from_bytes, policy

    from triage.alerts.mail import build_message
    from triage.config import SmtpSettings

    key = "email:alert:" + "1.2." + "9" * 60 + ":0"  # a 64-character Study Instance UID
    payload = {"study_uid": "1.2", "accession_number": "A1", "priority": "critical", "subtypes": [],
               "probabilities": {"any": 0.9}, "study_url": "https://t/studies/1.2", "model_version": "m",
               "provisional": False}
    message = build_message(SmtpSettings(sender="t@example.org", recipients=["r@example.org"]), "alert", key,
                            payload)
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert parsed["X-Triage-Idempotency-Key"] == key
