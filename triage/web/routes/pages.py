"""The browser pages: login and logout, the worklist, the study page and its forms."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Path, Request
from fastapi.responses import RedirectResponse, Response

from triage.db import queries
from triage.db.audit import audit
from triage.db.models import utcnow
from triage.db.thresholds import load_thresholds
from triage.web import actions
from triage.web.deps import ContextDep, Principal, ReaderDep, ReaderWriteDep, SessionDep, get_principal
from triage.web.security import SessionData, csrf_matches, is_https, new_session
from triage.web.users import authenticate

LOGGER = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"
StudyUid = Annotated[str, Path(pattern=UID_PATTERN, max_length=64)]
STATUSES = ("receiving", "queued", "processing", "classified", "failed", "not_analysed")


def render(request: Request, context: ContextDep, name: str, data: dict[str, Any], *,
           principal: Principal | None, status_code: int = 200, csrf: str | None = None) -> Response:
    """A page from ``templates/name`` with the user and the CSRF token every form needs."""
    values = {"principal": principal, "csrf_token": csrf or (principal.csrf if principal else ""), "now": utcnow()}
    return context.templates.TemplateResponse(request, name, values | data, status_code=status_code)


def safe_next(target: str | None) -> str:
    """Where to go after login: only a path on this site (no ``//host`` or scheme)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or "\n" in target:
        return "/"
    return target


# -- login ------------------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, context: ContextDep, session: SessionDep, next: str = "/") -> Response:
    """The login form (with an anonymous session carrying its CSRF token)."""
    if get_principal(request, session, context, None, request.cookies.get("triage_session")) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_form(request, context, next)


def _login_form(request: Request, context: ContextDep, next: str, *, error: str = "", status_code: int = 200,
                username: str = "", headers: dict[str, str] | None = None) -> Response:
    data = context.cookie.load(request)
    if data is None or data.user_id is not None:
        data = new_session()
    response = render(request, context, "login.html", {"next": safe_next(next), "error": error,
                                                         "username": username},
                      principal=None, status_code=status_code, csrf=data.csrf)
    response.headers.update(headers or {})
    context.cookie.save(response, data, secure=is_https(request, context.settings.web.base_url))
    return response


@router.post("/login")
def login(
    request: Request,
    context: ContextDep,
    session: SessionDep,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Check the password (rate limited per address and per name); start a session with a new CSRF token."""
    anon = context.cookie.load(request)
    if anon is None or not csrf_matches(anon.csrf, csrf_token):
        return _login_form(request, context, next, error="Your login form expired. Please try again.",
                           status_code=403, username=username)
    client = request.client.host if request.client else "unknown"
    wait = context.limiter.hit(f"ip:{client}", f"user:{username.lower()}")
    if wait > 0:
        LOGGER.warning("login rate limit reached (client %s)", client)
        return _login_form(request, context, next, error=f"Too many attempts. Wait {int(wait) + 1} s.",
                           status_code=429, username=username, headers={"Retry-After": str(int(wait) + 1)})
    user = authenticate(session, username, password)
    if user is None:
        audit(session, username[:64] or "?", "login.failed", "", client=client)
        session.commit()
        return _login_form(request, context, next, error="Wrong user name or password.", status_code=401,
                           username=username)
    user.last_login_at = utcnow()
    audit(session, user.username, "login", "", client=client)
    session.commit()
    response = RedirectResponse(safe_next(next), status_code=303)
    context.cookie.save(response, new_session(user.id, user.username),
                        secure=is_https(request, context.settings.web.base_url))
    return response


@router.post("/logout")
def logout(request: Request, context: ContextDep, session: SessionDep, principal: ReaderWriteDep) -> Response:
    """End the session."""
    audit(session, principal.username, "logout", "")
    session.commit()
    response = RedirectResponse("/login", status_code=303)
    secure = is_https(request, context.settings.web.base_url)
    context.cookie.clear(response, secure=secure)
    context.cookie.save(response, SessionData(csrf=new_session().csrf), secure=secure)
    return response


# -- worklist ---------------------------------------------------------------------------------------


def _filter_from(request: Request) -> queries.WorklistFilter:
    """The worklist filter from the page's query string (empty fields ignored; bad values: 400)."""
    params = request.query_params
    status = params.get("status") or None
    if status is not None and status not in STATUSES:
        raise HTTPException(400, f"unknown status {status!r}: expected one of {list(STATUSES)}")
    flagged = {"": None, "1": True, "true": True, "0": False, "false": False}.get(params.get("flagged", ""), None)
    return queries.WorklistFilter(
        flagged=flagged, status=status, date_from=_date(params.get("date_from")),
        date_to=_date(params.get("date_to")), search=(params.get("q") or "")[:64] or None,
    )


def _date(raw: str | None) -> dt.date | None:
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise HTTPException(400, f"invalid date {raw!r}: expected YYYY-MM-DD") from None


@router.get("/")
def worklist_page(request: Request, context: ContextDep, session: SessionDep, principal: ReaderDep) -> Response:
    """The priority worklist (refreshed in place by static/worklist.js)."""
    filt = _filter_from(request)
    page = queries.worklist(session, filt)
    return render(request, context, "worklist.html", {"page": page, "filter": filt, "statuses": STATUSES},
                  principal=principal)


# -- study --------------------------------------------------------------------------------------------


@router.get("/studies/{study_uid}")
def study_page(study_uid: StudyUid, request: Request, context: ContextDep, session: SessionDep,
               principal: ReaderDep) -> Response:
    """Findings, the per-slice chart, key images, per-stage times, acknowledge and feedback."""
    detail = queries.study_detail(session, study_uid)
    if detail is None:
        raise HTTPException(404, f"no study with UID {study_uid!r}")
    thresholds, enabled = load_thresholds(session)
    slices = [point for s in detail.series for point in s.slices]
    return render(request, context, "study.html",
                  {"detail": detail, "item": detail.item, "thresholds": thresholds, "enabled": enabled,
                   "slices": slices, "saved": request.query_params.get("saved")},
                  principal=principal)


@router.post("/studies/{study_uid}/ack")
def acknowledge_form(study_uid: StudyUid, session: SessionDep, principal: ReaderWriteDep,
                     next: Annotated[str, Form(max_length=2000)] = "") -> Response:
    """The acknowledge button without JavaScript: acknowledge, then back to where it was pressed."""
    try:
        actions.acknowledge(session, study_uid, principal.username)
    except actions.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return RedirectResponse(safe_next(next or f"/studies/{study_uid}"), status_code=303)


@router.post("/studies/{study_uid}/feedback")
def feedback_form(
    study_uid: StudyUid,
    session: SessionDep,
    principal: ReaderWriteDep,
    agree: Annotated[str, Form(pattern="^(yes|no)$")],
    true_subtypes: Annotated[list[str] | None, Form()] = None,
    comment: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Store the radiologist's verdict and go back to the study page."""
    try:
        actions.add_feedback(session, study_uid, principal.username, agree=agree == "yes",
                             true_subtypes=true_subtypes or [], comment=comment.replace("\x00", ""))
    except actions.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return RedirectResponse(f"/studies/{study_uid}?saved=feedback#feedback", status_code=303)
