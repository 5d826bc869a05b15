"""Dependencies of the routes: the app's context, a database session, the logged-in user, CSRF."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings
from triage.db.models import User
from triage.domain import Role
from triage.web.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    LoginLimiter,
    SessionCookie,
    SessionData,
    csrf_matches,
)
from triage.web.users import user_for_token

LOGGER = logging.getLogger(__name__)


@dataclass
class AppContext:
    """What the routes share, built by ``create_app`` and owned by the app (no module globals)."""

    settings: Settings
    factory: sessionmaker[Session]
    templates: Jinja2Templates
    cookie: SessionCookie
    limiter: LoginLimiter


@dataclass(frozen=True)
class Principal:
    """Who makes the request: a logged-in user (session) or an integration (API token)."""

    user_id: int
    username: str
    role: Role
    via: Literal["session", "token"]
    csrf: str | None = None

    @property
    def is_admin(self) -> bool:
        """Whether the user has the admin role."""
        return self.role is Role.ADMIN


class AuthRequired(Exception):
    """No valid session or token: 401 for the API, a redirect to /login for pages."""


class Forbidden(Exception):
    """Logged in, but the role does not allow this (403)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CsrfRejected(Exception):
    """A state-changing browser request without the session's CSRF token (403)."""


def get_context(request: Request) -> AppContext:
    """The :class:`AppContext` of the app serving ``request``."""
    context: AppContext = request.app.state.context
    return context


ContextDep = Annotated[AppContext, Depends(get_context)]


def get_session(context: ContextDep) -> Iterator[Session]:
    """A session for one request (closed after; routes that write commit themselves)."""
    with context.factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="An API token from `triage user token NAME` or /admin")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="The browser session after /login")


def get_browser_session(request: Request, context: ContextDep) -> SessionData | None:
    """The signed session cookie's content, or None."""
    return context.cookie.load(request)


def get_principal(
    request: Request,
    session: SessionDep,
    context: ContextDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Principal | None:
    """The user behind the request's API token or session cookie, or None.

    A token that does not match, or a user since disabled, counts as no login at all.
    """
    if bearer is not None:
        user = user_for_token(session, bearer.credentials)
        if user is None:
            return None
        return Principal(user.id, user.username, Role(user.role), "token")
    data = context.cookie.load(request) if cookie else None
    if data is None or data.user_id is None:
        return None
    user = session.get(User, data.user_id)
    if user is None or user.disabled or user.username != data.username:
        return None
    return Principal(user.id, user.username, Role(user.role), "session", data.csrf)


def require(*roles: Role) -> Callable[..., Principal]:
    """A dependency that answers 401 without a login and 403 when the role is not in ``roles``."""

    def dependency(principal: Annotated[Principal | None, Depends(get_principal)]) -> Principal:
        if principal is None:
            raise AuthRequired()
        if principal.role not in roles:
            raise Forbidden(f"the {principal.role.value} role may not do this (needs {'/'.join(roles)})")
        return principal

    return dependency


ReaderDep = Annotated[Principal, Depends(require(Role.RADIOLOGIST, Role.ADMIN))]
AdminDep = Annotated[Principal, Depends(require(Role.ADMIN))]


async def check_csrf(request: Request, principal: Principal) -> None:
    """Reject a session-authenticated state change without the session's CSRF token.

    Browsers send it as the ``X-CSRF-Token`` header (fetch) or the ``csrf_token`` form field;
    requests with an API token are exempt (no ambient credentials to abuse).
    """
    if principal.via == "token":
        return
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if principal.csrf is None or not csrf_matches(principal.csrf, given):
        raise CsrfRejected()


async def _csrf_reader(request: Request, principal: ReaderDep) -> Principal:
    await check_csrf(request, principal)
    return principal


async def _csrf_admin(request: Request, principal: AdminDep) -> Principal:
    await check_csrf(request, principal)
    return principal


#: A radiologist or admin, with the CSRF token checked for browser sessions.
ReaderWriteDep = Annotated[Principal, Depends(_csrf_reader)]
#: An admin, with the CSRF token checked for browser sessions.
AdminWriteDep = Annotated[Principal, Depends(_csrf_admin)]
