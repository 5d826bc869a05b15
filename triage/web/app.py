"""The FastAPI application factory: settings checks, lifespan, middleware, error handling, routes."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from triage import __version__
from triage.config import Settings
from triage.errors import ConfigError
from triage.web import filters
from triage.web.deps import AppContext, AuthRequired, CsrfRejected, Forbidden
from triage.web.metrics import database_registry
from triage.web.security import MIN_SECRET_LENGTH, LoginLimiter, SecurityHeaders, SessionCookie
from triage.web.users import count_users

LOGGER = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent

API_DESCRIPTION = """\
The JSON API of triage (DESIGN.md section 4). Every route but `/api/health` and `/metrics` needs a
browser session (after `/login`) or an API token: `Authorization: Bearer <token>` (tokens come from
`triage user token NAME` or the admin page). Browser sessions must send their CSRF token as
`X-CSRF-Token` on state-changing requests; token requests are exempt.
"""


def secret_key(settings: Settings) -> str:
    """The key that signs session cookies; a random one per process in demo mode.

    Raises
    ------
    ConfigError
        Outside demo mode, when ``web.secret_key`` is missing or shorter than 16 characters.
    """
    key = settings.web.secret_key
    if key and len(key) >= MIN_SECRET_LENGTH:
        return key
    if settings.demo and not key:
        LOGGER.warning("demo mode: a random web secret key is used; logins end when the process stops")
        return secrets.token_urlsafe(32)
    reason = (f"at least {MIN_SECRET_LENGTH} characters are required" if key else
              "required outside demo mode: set [web] secret_key in the config file or TRIAGE_WEB__SECRET_KEY "
              "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    raise ConfigError("web.secret_key", "<hidden>" if key else "", reason)


def create_app(settings: Settings, factory: sessionmaker[Session]) -> FastAPI:
    """Build the web application around ``settings`` and the session factory ``factory``.

    Parameters
    ----------
    settings
        The daemon's settings (``web.secret_key`` is required unless ``settings.demo``).
    factory
        Session factory of the database (the daemon's; the app never creates an engine).

    Raises
    ------
    ConfigError
        When the secret key is missing or too short outside demo mode.
    """
    key = secret_key(settings)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    filters.install(templates.env)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.context = AppContext(
            settings=settings, factory=factory, templates=templates, cookie=SessionCookie(key),
            limiter=LoginLimiter(settings.web.login_attempts_per_minute),
        )
        app.state.metrics_registry = database_registry(factory)
        await run_in_threadpool(_announce_first_start, factory)
        yield

    app = FastAPI(
        title="triage", version=__version__, description=API_DESCRIPTION, lifespan=lifespan,
        docs_url=None, redoc_url=None, openapi_url="/openapi.json",
    )
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    _install_handlers(app, templates)

    from triage.web.routes import admin, api, pages

    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(admin.router)
    return app


def _announce_first_start(factory: sessionmaker[Session]) -> None:
    try:
        if count_users(factory) == 0:
            LOGGER.warning("no web users yet: create the first one with `triage user add NAME --role admin`")
    except SQLAlchemyError as exc:
        LOGGER.warning("cannot count the web users (%s)", type(exc).__name__)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _install_handlers(app: FastAPI, templates: Jinja2Templates) -> None:
    """401 / 403 / errors as JSON for the API, and as redirects or HTML pages for the browser."""

    @app.exception_handler(AuthRequired)
    async def _auth_required(request: Request, exc: AuthRequired) -> Response:
        if _is_api(request) or request.method != "GET":
            return JSONResponse({"detail": "not authenticated: log in or send an API token"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={_quote(target)}", status_code=303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        return _error(request, templates, 403, exc.message)

    @app.exception_handler(CsrfRejected)
    async def _csrf(request: Request, exc: CsrfRejected) -> Response:
        return _error(request, templates, 403, "missing or wrong CSRF token: reload the page and try again")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        return _error(request, templates, exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(SQLAlchemyError)
    async def _database(request: Request, exc: SQLAlchemyError) -> Response:
        LOGGER.error("database error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return _error(request, templates, 503, "the database is unavailable; try again shortly",
                      {"Retry-After": "5"})


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


def _error(request: Request, templates: Jinja2Templates, status: int, message: str,
           headers: dict[str, Any] | None = None) -> Response:
    if _is_api(request) or "text/html" not in request.headers.get("accept", ""):
        return JSONResponse({"detail": message}, status_code=status, headers=headers)
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message, "principal": None},
        status_code=status, headers=headers,
    )
