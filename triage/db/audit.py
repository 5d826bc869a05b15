"""The audit log: one row per change, acknowledgement, login, alert send, escalation."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from triage.db.models import AuditEvent

LOGGER = logging.getLogger(__name__)


def audit(session: Session, actor: str, action: str, target: str = "", **detail: Any) -> AuditEvent:
    """Add an audit event to ``session`` (committed with the change it records).

    ``detail`` must not hold patient identifiers beyond UIDs: the log line that mirrors the row is
    written at DEBUG level only.
    """
    event = AuditEvent(actor=actor, action=action, target=target, detail=detail)
    session.add(event)
    LOGGER.debug("audit: %s %s %s %s", actor, action, target, detail)
    return event
