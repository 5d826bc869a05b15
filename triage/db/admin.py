"""Run-time settings that admins change on /admin (stored as JSON, read by every role without restart)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from triage.db.audit import audit
from triage.db.models import AdminSetting, utcnow

#: Keys of the admin_settings table and what they hold.
ALLOWED_AETS = "dicom.allowed_aets"  # list[str]; overrides [dicom] allowed_aets when present
ALERT_CHANNELS = "alerts.channels"  # {"webhook": bool, "email": bool, "dicom": bool}; missing: on


def get_admin_setting(session: Session, key: str, default: Any = None) -> Any:
    """The stored value of ``key``, or ``default`` when the admin never set it."""
    row = session.get(AdminSetting, key)
    return default if row is None else row.value


def set_admin_setting(session: Session, key: str, value: Any, actor: str) -> None:
    """Store ``value`` under ``key`` and write the change to the audit log (same transaction)."""
    row = session.get(AdminSetting, key)
    old = None if row is None else row.value
    if row is None:
        session.add(AdminSetting(key=key, value=value, updated_by=actor))
    else:
        row.value = value
        row.updated_at = utcnow()
        row.updated_by = actor
    audit(session, actor, "setting.change", key, old=old, new=value)
