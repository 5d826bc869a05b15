"""The webhook channel: a JSON POST signed with HMAC-SHA256 over the raw body."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from triage import __version__
from triage.alerts.channels import DeliveryError
from triage.config import Settings
from triage.db.outbox import Claim

LOGGER = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Triage-Signature"
IDEMPOTENCY_HEADER = "X-Triage-Idempotency-Key"
EVENT_HEADER = "X-Triage-Event"
MAX_ERROR_BODY = 200


def encode_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes that are sent and signed (compact JSON, keys sorted, UTF-8)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign_body(body: bytes, secret: str) -> str:
    """The signature header value: ``sha256=`` and the hex HMAC-SHA256 of ``body`` keyed with ``secret``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
    """Whether ``header`` is the signature of ``body`` (constant-time comparison; what receivers do)."""
    if not header:
        return False
    return hmac.compare_digest(sign_body(body, secret), header.strip())


def send_webhook(settings: Settings, factory: sessionmaker[Session], claim: Claim) -> dict[str, object]:
    """POST ``claim.payload`` to ``alerts.webhook.url``; any 2xx answer is a delivery.

    Raises
    ------
    DeliveryError
        On a timeout, a connection error or a non-2xx status (with the status and the start of the body).
    """
    config = settings.alerts.webhook
    body = encode_body(claim.payload)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": f"triage/{__version__}",
        IDEMPOTENCY_HEADER: claim.idempotency_key,
        EVENT_HEADER: claim.kind,
    }
    if config.secret:
        headers[SIGNATURE_HEADER] = sign_body(body, config.secret)
    try:
        response = httpx.post(
            config.url, content=body, headers=headers, timeout=config.timeout_seconds, follow_redirects=False
        )
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"webhook timed out after {config.timeout_seconds} s ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise DeliveryError(f"webhook request failed: {type(exc).__name__}: {exc}") from exc
    if not response.is_success:
        text = response.text[:MAX_ERROR_BODY].replace("\n", " ")
        raise DeliveryError(f"webhook answered HTTP {response.status_code}: {text}")
    return {"status": response.status_code}
