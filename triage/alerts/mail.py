"""The e-mail channel: a short plain-text and HTML message over SMTP (STARTTLS and login optional)."""

from __future__ import annotations

import hashlib
import logging
import smtplib
import ssl
from email import policy
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import jinja2
from sqlalchemy.orm import Session, sessionmaker

from triage.alerts.channels import DeliveryError
from triage.config import Settings, SmtpSettings
from triage.db.outbox import Claim

LOGGER = logging.getLogger(__name__)

HEADLINES = {
    "alert": "Suspected intracranial hemorrhage",
    "update": "Update: more findings on a flagged study",
    "retract": "Retracted: the AI no longer flags this study",
    "escalation": "ESCALATION: flagged study not acknowledged",
}

#: No folding below RFC 5322's 998 characters: a folded idempotency key would reach receivers with a
#: leading space.
POLICY = policy.default.clone(max_line_length=998)

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)  # noqa: S701 - autoescape is on

TEXT = _ENV.from_string(
    """{{ headline }}
{% if p.escalation is defined %}Not acknowledged for {{ p.unacknowledged_minutes }} minutes \
(escalation {{ p.escalation }}).
{% endif %}
Study: {{ label }}
Priority: {{ p.priority }}
{% if findings %}Findings: {{ findings }}
{% endif %}P(any hemorrhage): {{ "%.2f"|format(p.probabilities.any) }}
{% if p.provisional %}Preliminary: from the slices received so far; the final result follows.
{% endif %}Open the study: {{ p.study_url }}

Model {{ p.model_version }}. Computer-aided triage, not a diagnosis.
Study Instance UID {{ p.study_uid }}
"""
)

HTML = _ENV.from_string(
    """<!doctype html>
<html><body style="font-family:sans-serif">
<h2 style="color:#b00020">{{ headline }}</h2>
{% if p.escalation is defined %}<p><strong>Not acknowledged for {{ p.unacknowledged_minutes }} minutes</strong>
(escalation {{ p.escalation }}).</p>{% endif %}
<table>
<tr><th align="left">Study</th><td>{{ label }}</td></tr>
<tr><th align="left">Priority</th><td>{{ p.priority }}</td></tr>
{% for s in p.subtypes %}<tr><th align="left">{{ s.name }}</th><td>{{ "%.2f"|format(s.probability) }}</td></tr>
{% endfor %}<tr><th align="left">P(any hemorrhage)</th><td>{{ "%.2f"|format(p.probabilities.any) }}</td></tr>
</table>
{% if p.provisional %}<p>Preliminary: from the slices received so far; the final result follows.</p>{% endif %}
<p><a href="{{ p.study_url }}">Open the study</a></p>
<p style="color:#666;font-size:small">Model {{ p.model_version }}. Computer-aided triage, not a diagnosis.<br>
Study Instance UID {{ p.study_uid }}</p>
</body></html>
"""
)


def study_label(payload: dict[str, Any]) -> str:
    """How the message names the study: only the patient fields present in the payload, else the UID."""
    parts = []
    if payload.get("accession_number"):
        parts.append(f"accession {payload['accession_number']}")
    patient = payload.get("patient") or {}
    if patient.get("name"):
        parts.append(str(patient["name"]))
    if patient.get("id"):
        parts.append(f"patient {patient['id']}")
    if payload.get("study_description"):
        parts.append(str(payload["study_description"]))
    return ", ".join(parts) or f"study {payload['study_uid']}"


def build_message(config: SmtpSettings, kind: str, key: str, payload: dict[str, Any]) -> EmailMessage:
    """The message for one outbox row; its Message-ID derives from the idempotency key."""
    headline = HEADLINES.get(kind, HEADLINES["alert"])
    label = study_label(payload)
    message = EmailMessage(policy=POLICY)
    message["Subject"] = f"[triage] {headline} ({payload.get('priority', 'critical')}) - {label}"
    message["From"] = config.sender
    message["To"] = ", ".join(config.recipients)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@triage.alerts>"
    message["X-Triage-Idempotency-Key"] = key
    message["X-Triage-Event"] = kind
    findings = ", ".join(f"{s['name']} {s['probability']:.2f}" for s in payload.get("subtypes", []))
    message.set_content(TEXT.render(headline=headline, label=label, findings=findings, p=payload))
    message.add_alternative(HTML.render(headline=headline, label=label, p=payload), subtype="html")
    return message


def send_email(settings: Settings, factory: sessionmaker[Session], claim: Claim) -> dict[str, object]:
    """Send the row's message to every configured recipient.

    Raises
    ------
    DeliveryError
        When the server cannot be reached, STARTTLS or login fails, or every recipient is refused.
    """
    config = settings.alerts.smtp
    message = build_message(config, claim.kind, claim.idempotency_key, claim.payload)
    try:
        with smtplib.SMTP(config.host, config.port, timeout=config.timeout_seconds) as smtp:
            smtp.ehlo()
            if config.starttls:
                smtp.starttls(context=ssl.create_default_context(cafile=config.tls_ca or None))
                smtp.ehlo()
            if config.username:
                smtp.login(config.username, config.password)
            refused = smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"e-mail to {config.host}:{config.port} failed: {type(exc).__name__}: {exc}") from exc
    if refused:
        LOGGER.warning("e-mail: %d of %d recipients refused", len(refused), len(config.recipients))
    return {"recipients": len(config.recipients) - len(refused), "refused": len(refused)}
