"""The admin page and its forms: thresholds, channels, allowed AEs, users, tokens; alerts and audit."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.db import outbox, queries
from triage.db.models import Threshold, utcnow
from triage.db.thresholds import load_thresholds
from triage.domain import CLASSES, Role
from triage.errors import UsageError
from triage.web import admin_ops
from triage.web.admin_ops import AdminInputError
from triage.web.deps import AdminDep, AdminWriteDep, AppContext, ContextDep, Principal, SessionDep
from triage.web.routes.pages import render
from triage.web.users import create_user, find_user, new_token

LOGGER = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

EFFECT_DAYS = 30
AUDIT_PAGE = 50
SAVED = {
    "thresholds": "Thresholds saved. The worker applies them from its next classification.",
    "channels": "Alert channel switches saved.",
    "aets": "Allowed calling AE titles saved. New associations are checked against them.",
    "users": "User saved.",
    "tokens": "API token revoked.",
    "alerts": "Alert queued again with fresh attempts; the dispatcher sends it on its next pass.",
}


def admin_view(request: Request, context: AppContext, session: Session, principal: Principal, *,
               error: str = "", status_code: int = 200, extra: dict[str, Any] | None = None) -> Response:
    """The admin page with everything it shows."""
    thresholds = {row.class_name: row for row in _threshold_rows(session)}
    values, enabled = load_thresholds(session)
    since = utcnow() - dt.timedelta(days=EFFECT_DAYS)
    complete = {name: values.get(name, 2.0) for name in CLASSES}
    effect = queries.threshold_effect(session, complete, enabled, since=since)
    aets, aets_source = admin_ops.allowed_aets(session, context.settings)
    offset = _int(request.query_params.get("audit_offset"))
    events, total_events = queries.audit_log(session, limit=AUDIT_PAGE, offset=offset)
    saved = request.query_params.get("saved", "")
    data = {
        "thresholds": thresholds, "effect": effect, "effect_days": EFFECT_DAYS,
        "channels": admin_ops.channel_switches(session),
        "channel_targets": admin_ops.channel_configuration(context.settings),
        "aets": aets, "aets_source": aets_source, "config_aets": context.settings.dicom.allowed_aets,
        "users": queries.users(session), "roles": [r.value for r in Role],
        "tokens": queries.api_tokens(session),
        "alert_counts": queries.alert_state_counts(session),
        "problem_alerts": queries.alerts_in_state(session, ["dead", "pending"]),
        "events": events, "events_total": total_events, "audit_offset": offset, "audit_page": AUDIT_PAGE,
        "error": error, "message": SAVED.get(saved, ""), "new_token": None,
    } | (extra or {})
    return render(request, context, "admin.html", data, principal=principal, status_code=status_code)


def _threshold_rows(session: Session) -> list[Threshold]:
    return list(session.scalars(select(Threshold)))


def _int(raw: str | None) -> int:
    try:
        return max(0, min(int(raw or 0), 10_000_000))
    except ValueError:
        return 0


def _saved(section: str) -> Response:
    return RedirectResponse(f"/admin?saved={section}#{section}", status_code=303)


def _failed(request: Request, context: AppContext, session: Session, principal: Principal,
            exc: Exception) -> Response:
    session.rollback()
    return admin_view(request, context, session, principal, error=str(exc), status_code=400)


@router.get("/admin")
def admin_page(request: Request, context: ContextDep, session: SessionDep, principal: AdminDep) -> Response:
    """Thresholds with their effect, alert channels, allowed AEs, users, tokens, alerts, audit log."""
    return admin_view(request, context, session, principal)


@router.post("/admin/thresholds")
async def save_thresholds(request: Request, context: ContextDep, session: SessionDep,
                          principal: AdminWriteDep) -> Response:
    """Save every class's threshold and alert switch (one audit row per changed class)."""
    form = await request.form()
    try:
        values, enabled = admin_ops.parse_thresholds(form)
        admin_ops.update_thresholds(session, values, enabled, principal.username)
        session.commit()
    except AdminInputError as exc:
        return _failed(request, context, session, principal, exc)
    return _saved("thresholds")


@router.post("/admin/channels")
async def save_channels(request: Request, session: SessionDep, principal: AdminWriteDep) -> Response:
    """Switch alert channels on or off."""
    admin_ops.update_channels(session, await request.form(), principal.username)
    session.commit()
    return _saved("channels")


@router.post("/admin/aets")
def save_aets(request: Request, context: ContextDep, session: SessionDep, principal: AdminWriteDep,
              allowed_aets: Annotated[str, Form(max_length=20_000)] = "") -> Response:
    """Replace the allowed calling AE titles (empty: every caller is accepted)."""
    try:
        titles = admin_ops.parse_aets(allowed_aets)
        admin_ops.update_aets(session, context.settings, titles, principal.username)
        session.commit()
    except AdminInputError as exc:
        return _failed(request, context, session, principal, exc)
    return _saved("aets")


@router.post("/admin/users")
def add_user_form(request: Request, context: ContextDep, session: SessionDep, principal: AdminWriteDep,
                  username: Annotated[str, Form(max_length=200)], role: Annotated[str, Form(max_length=40)],
                  password: Annotated[str, Form(max_length=1000)]) -> Response:
    """Create a user."""
    try:
        create_user(session, username.strip(), role, password, principal.username)
        session.commit()
    except UsageError as exc:
        return _failed(request, context, session, principal, exc)
    return _saved("users")


@router.post("/admin/users/{username}")
def change_user(request: Request, context: ContextDep, session: SessionDep, principal: AdminWriteDep,
                username: Annotated[str, Path(max_length=64)], action: Annotated[str, Form(max_length=20)],
                role: Annotated[str, Form(max_length=40)] = "",
                password: Annotated[str, Form(max_length=1000)] = "") -> Response:
    """Change a user's role, disable or enable them, or set a new password."""
    try:
        admin_ops.update_user(session, username, action, principal.username, role=role, password=password)
        session.commit()
    except AdminInputError as exc:
        return _failed(request, context, session, principal, exc)
    return _saved("users")


@router.post("/admin/tokens")
def issue_token_form(request: Request, context: ContextDep, session: SessionDep, principal: AdminWriteDep,
                     username: Annotated[str, Form(max_length=64)]) -> Response:
    """Issue an API token for a user; the page shows it once (only its hash is kept)."""
    user = find_user(session, username)
    if user is None or user.disabled:
        return _failed(request, context, session, principal,
                       AdminInputError(f"no enabled user called {username!r}"))
    token, _ = new_token(session, user, principal.username)
    session.commit()
    return admin_view(request, context, session, principal, extra={"new_token": token, "token_user": username})


@router.post("/admin/tokens/{token_id}/revoke")
def revoke_token_form(request: Request, context: ContextDep, session: SessionDep, principal: AdminWriteDep,
                      token_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> Response:
    """Revoke an API token."""
    try:
        admin_ops.revoke_token(session, token_id, principal.username)
        session.commit()
    except AdminInputError as exc:
        return _failed(request, context, session, principal, exc)
    return _saved("tokens")


@router.post("/admin/alerts/{alert_id}/retry")
def retry_alert_form(request: Request, context: ContextDep, session: SessionDep, principal: AdminWriteDep,
                     alert_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> Response:
    """Queue a dead or cancelled alert again (after the receiver was fixed); audited as ``alert.retry``."""
    try:
        outbox.retry_alert(session, alert_id, principal.username)
        session.commit()
    except ValueError as exc:
        return _failed(request, context, session, principal, AdminInputError(str(exc)))
    return _saved("alerts")
