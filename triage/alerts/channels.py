"""What a channel is: a function that delivers one claimed outbox row or raises :class:`DeliveryError`."""

from __future__ import annotations

import importlib
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings
from triage.db.outbox import Claim
from triage.errors import TriageError


class DeliveryError(TriageError):
    """A channel could not deliver an alert (the dispatcher retries it later, or marks it dead)."""


class Sender(Protocol):
    """Deliver ``claim`` on one channel; return audit details (no patient data) or raise."""

    def __call__(self, settings: Settings, factory: sessionmaker[Session], claim: Claim) -> dict[str, object]: ...


#: channel name -> "module:function" (imported on first use, so pynetdicom/highdicom load only when needed)
SENDERS = {
    "webhook": "triage.alerts.webhook:send_webhook",
    "email": "triage.alerts.mail:send_email",
    "dicom": "triage.alerts.dicom_export:send_report",
}


def sender_for(channel: str) -> Sender:
    """The send function of ``channel``.

    Raises
    ------
    ValueError
        For a channel name that is not one of ``SENDERS``.
    """
    try:
        module, function = SENDERS[channel].split(":")
    except KeyError:
        raise ValueError(f"unknown alert channel {channel!r}: expected one of {sorted(SENDERS)}") from None
    sender: Sender = getattr(importlib.import_module(module), function)
    return sender
