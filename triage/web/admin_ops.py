"""What admins change: thresholds, alert channel switches, allowed AE titles, users and tokens.

Every function validates all of its input before it changes anything, writes one audit row per
change, and leaves committing to the caller. Invalid input raises :class:`AdminInputError`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.config import AETitle, Settings
from triage.db.admin import ALERT_CHANNELS, ALLOWED_AETS, get_admin_setting, set_admin_setting
from triage.db.audit import audit
from triage.db.models import ApiToken, Threshold, User, utcnow
from triage.domain import CLASSES, AlertChannel, Role
from triage.errors import UsageError
from triage.web.users import check_password, check_role, hash_password

LOGGER = logging.getLogger(__name__)

_AE_LIST = TypeAdapter(list[AETitle])


class AdminInputError(ValueError):
    """An admin form value that cannot be used (the message names it); nothing was changed."""


def parse_thresholds(form: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, bool]]:
    """Thresholds (``threshold_<class>``) and alert switches (``enabled_<class>``) from a form."""
    values: dict[str, float] = {}
    for name in CLASSES:
        raw = str(form.get(f"threshold_{name}", "")).strip()
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not 0.0 <= value <= 1.0:
            raise AdminInputError(f"threshold for {name} {raw!r}: expected a number from 0 to 1")
        values[name] = value
    return values, {name: bool(form.get(f"enabled_{name}")) for name in CLASSES}


def update_thresholds(session: Session, values: Mapping[str, float], enabled: Mapping[str, bool],
                      actor: str) -> list[str]:
    """Store the thresholds and switches (the worker reads them at its next classification).

    Returns the classes that changed.
    """
    rows = {row.class_name: row for row in session.scalars(select(Threshold))}
    changed = []
    for name in CLASSES:
        row = rows.get(name)
        if row is None:
            row = Threshold(class_name=name, threshold=values[name], alert_enabled=enabled[name])
            session.add(row)
            old: dict[str, Any] = {"threshold": None, "alert_enabled": None}
        elif row.threshold == values[name] and row.alert_enabled == enabled[name]:
            continue
        else:
            old = {"threshold": row.threshold, "alert_enabled": row.alert_enabled}
        row.threshold = values[name]
        row.alert_enabled = enabled[name]
        row.updated_at = utcnow()
        row.updated_by = actor
        audit(session, actor, "threshold.change", name, old=old,
              new={"threshold": values[name], "alert_enabled": enabled[name]})
        changed.append(name)
    return changed


def channel_switches(session: Session) -> dict[str, bool]:
    """Whether each alert channel is switched on (a channel the admin never switched is on)."""
    stored = get_admin_setting(session, ALERT_CHANNELS, {}) or {}
    return {channel.value: bool(stored.get(channel.value, True)) for channel in AlertChannel}


def channel_configuration(settings: Settings) -> dict[str, str]:
    """Where each channel sends to, without secrets ('' when the channel is not configured)."""
    from urllib.parse import urlsplit

    alerts = settings.alerts
    webhook = urlsplit(alerts.webhook.url)
    smtp = alerts.smtp
    hook = f"{webhook.scheme}://{webhook.hostname}{webhook.path}" if alerts.webhook.url else ""
    return {
        AlertChannel.WEBHOOK.value: hook,
        AlertChannel.EMAIL.value: (f"{smtp.host}:{smtp.port}, {len(smtp.recipients)} recipient(s)"
                                   if smtp.host and smtp.recipients else ""),
        AlertChannel.DICOM.value: (f"{alerts.dicom.ae_title}@{alerts.dicom.host}:{alerts.dicom.port}"
                                   if alerts.dicom.ae_title and alerts.dicom.host else ""),
    }


def update_channels(session: Session, form: Mapping[str, Any], actor: str) -> bool:
    """Store the switches ``channel_<name>`` from a form; return whether anything changed."""
    new = {channel.value: bool(form.get(f"channel_{channel.value}")) for channel in AlertChannel}
    if new == channel_switches(session) and get_admin_setting(session, ALERT_CHANNELS) is not None:
        return False
    set_admin_setting(session, ALERT_CHANNELS, new, actor)
    return True


def allowed_aets(session: Session, settings: Settings) -> tuple[list[str], str]:
    """The allowed calling AE titles in force and where they come from (``admin`` or ``config``)."""
    stored = get_admin_setting(session, ALLOWED_AETS)
    if stored is None:
        return list(settings.dicom.allowed_aets), "config"
    return list(stored), "admin"


def parse_aets(text: str) -> list[str]:
    """AE titles from a text box (one per line or separated by commas); empty allows every caller."""
    titles = [t.strip() for t in re.split(r"[,\n\r]+", text) if t.strip()]
    try:
        checked = _AE_LIST.validate_python(titles)
    except ValidationError as exc:
        error = exc.errors()[0]
        bad = error.get("input")
        raise AdminInputError(f"AE title {bad!r}: 1 to 16 printable ASCII characters, no backslash") from None
    return list(dict.fromkeys(checked))


def update_aets(session: Session, settings: Settings, titles: list[str], actor: str) -> bool:
    """Store the allow list (the DICOM listener reads it for each new association)."""
    current, source = allowed_aets(session, settings)
    if source == "admin" and current == titles:
        return False
    set_admin_setting(session, ALLOWED_AETS, titles, actor)
    return True


def _user(session: Session, name: str) -> User:
    user = session.scalars(select(User).where(User.username == name)).first()
    if user is None:
        raise AdminInputError(f"no user called {name!r}")
    return user


def _active_admins(session: Session) -> int:
    return len(session.scalars(select(User.id).where(User.role == Role.ADMIN.value,
                                                     User.disabled.is_(False))).all())


def update_user(session: Session, name: str, action: str, actor: str, *, role: str = "",
                password: str = "") -> None:
    """Change a user's role, disable or enable it, or set a new password.

    An admin cannot disable or demote themselves, and the last active admin stays an admin.
    """
    user = _user(session, name)
    try:
        if action == "role":
            new_role = check_role(role).value
            if new_role != Role.ADMIN.value and user.role == Role.ADMIN.value:
                _keep_an_admin(session, user, actor, "demote")
            if new_role != user.role:
                audit(session, actor, "user.role", name, old=user.role, new=new_role)
                user.role = new_role
        elif action == "disable":
            _keep_an_admin(session, user, actor, "disable")
            if not user.disabled:
                user.disabled = True
                audit(session, actor, "user.disable", name)
        elif action == "enable":
            if user.disabled:
                user.disabled = False
                audit(session, actor, "user.enable", name)
        elif action == "password":
            check_password(password)
            user.password_hash = hash_password(password)
            audit(session, actor, "user.password", name)
        else:
            raise AdminInputError(f"unknown action {action!r}: expected role, disable, enable or password")
    except UsageError as exc:
        raise AdminInputError(str(exc)) from None


def _keep_an_admin(session: Session, user: User, actor: str, verb: str) -> None:
    if user.username == actor:
        raise AdminInputError(f"you cannot {verb} yourself ({actor!r}); ask another admin")
    if user.role == Role.ADMIN.value and not user.disabled and _active_admins(session) <= 1:
        raise AdminInputError(f"{user.username!r} is the last active admin")


def revoke_token(session: Session, token_id: int, actor: str) -> None:
    """Delete an API token; integrations using it get 401 from now on."""
    token = session.get(ApiToken, token_id)
    if token is None:
        raise AdminInputError(f"no API token with id {token_id}")
    audit(session, actor, "token.revoke", token.user.username, token_id=token_id)
    session.delete(token)
