"""Browser security of the web app: signed session cookie, CSRF tokens, login rate limit, headers."""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOGGER = logging.getLogger(__name__)

SESSION_COOKIE = "triage_session"
SESSION_MAX_AGE = 12 * 3600
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
MIN_SECRET_LENGTH = 16

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


@dataclass(frozen=True)
class SessionData:
    """What the session cookie holds: the user (None before login) and the CSRF token."""

    csrf: str
    user_id: int | None = None
    username: str | None = None
    issued_at: float = 0.0


class SessionCookie:
    """A session held in a signed, timestamped cookie (itsdangerous); the user is re-read per request."""

    def __init__(self, secret_key: str, max_age: int = SESSION_MAX_AGE) -> None:
        self.serializer = URLSafeTimedSerializer(secret_key, salt="triage.session")
        self.max_age = max_age

    def load(self, conn: HTTPConnection) -> SessionData | None:
        """The session of the request, or None when it has none, or a forged or expired one."""
        raw = conn.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        try:
            data: Mapping[str, Any] = self.serializer.loads(raw, max_age=self.max_age)
            return SessionData(
                csrf=str(data["c"]),
                user_id=int(data["u"]) if data.get("u") is not None else None,
                username=data.get("n"),
                issued_at=float(data.get("t", 0.0)),
            )
        except (BadSignature, KeyError, TypeError, ValueError):
            return None

    def save(self, response: Response, data: SessionData, *, secure: bool) -> None:
        """Set the cookie on ``response``: HttpOnly, SameSite=Lax, Secure when served over HTTPS."""
        value = self.serializer.dumps({"c": data.csrf, "u": data.user_id, "n": data.username, "t": data.issued_at})
        response.set_cookie(
            SESSION_COOKIE, value, max_age=self.max_age, httponly=True, samesite="lax", secure=secure, path="/"
        )

    @staticmethod
    def clear(response: Response, *, secure: bool) -> None:
        """Remove the cookie."""
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=secure)


def new_session(user_id: int | None = None, username: str | None = None) -> SessionData:
    """A fresh session with a new CSRF token (a new one at login, so an old token cannot be fixed)."""
    return SessionData(csrf=secrets.token_urlsafe(32), user_id=user_id, username=username, issued_at=time.time())


def csrf_matches(expected: str, given: str | None) -> bool:
    """Constant-time check of a submitted CSRF token."""
    return bool(given) and hmac.compare_digest(expected.encode(), str(given).encode())


def is_https(conn: HTTPConnection, base_url: str = "") -> bool:
    """Whether the browser talks HTTPS to us (directly, via a trusted proxy, or per the base URL)."""
    return conn.url.scheme == "https" or base_url.lower().startswith("https://")


class LoginLimiter:
    """At most ``per_minute`` login attempts per client address and per user name in any 60 s."""

    def __init__(self, per_minute: int, window: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window = window
        self._attempts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, *keys: str) -> float:
        """Record an attempt under ``keys``; return 0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            waits = [self._wait(key, now) for key in keys]
            if max(waits, default=0.0) > 0:
                return max(waits)
            for key in keys:
                self._attempts.setdefault(key, deque()).append(now)
            if len(self._attempts) > 10_000:
                self._prune(now)
        return 0.0

    def _wait(self, key: str, now: float) -> float:
        attempts = self._attempts.get(key)
        if not attempts:
            return 0.0
        while attempts and now - attempts[0] >= self.window:
            attempts.popleft()
        if len(attempts) < self.per_minute:
            return 0.0
        return self.window - (now - attempts[0])

    def _prune(self, now: float) -> None:
        for key in [k for k, v in self._attempts.items() if not v or now - v[-1] >= self.window]:
            del self._attempts[key]


class SecurityHeaders:
    """ASGI middleware adding CSP, frame and sniffing protection, and ``no-store`` outside /static."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                extra = [
                    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"cache-control", b"private, max-age=3600" if static else b"no-store"),
                ]
                if https:
                    extra.append((b"strict-transport-security", b"max-age=31536000"))
                headers += [(name, value) for name, value in extra if name not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
