"""Web users and API tokens: scrypt password hashes, SHA-256 token hashes, creation and lookup."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from triage.db.audit import audit
from triage.db.engine import transaction
from triage.db.models import ApiToken, User, utcnow
from triage.domain import Role
from triage.errors import UsageError

LOGGER = logging.getLogger(__name__)

#: scrypt cost: 2**15 x 8 x 128 bytes = 32 MiB of memory per hash, about 0.1 s on one core.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAXMEM = 128 * 1024 * 1024
MIN_PASSWORD_LENGTH = 8
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
TOKEN_PREFIX = "trg_"  # noqa: S105 - a prefix, not a secret
#: ``last_used_at`` of a token is written at most this often (a read must not always write).
TOKEN_TOUCH_INTERVAL = dt.timedelta(minutes=5)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A salted scrypt hash of ``password``: ``scrypt$n$r$p$salt$hash`` (base64 parts)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches the ``stored`` hash (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
            maxmem=SCRYPT_MAXMEM, dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


#: Compared against when the user does not exist, so that the answer takes as long either way.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which an API token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_username(name: str) -> str:
    """Return ``name`` if it is a valid user name, else raise :class:`UsageError` naming it."""
    if not USERNAME.match(name):
        raise UsageError(f"invalid user name {name!r}: expected 1 to 64 letters, digits or . _ @ - "
                         "(starting with a letter or digit)")
    return name


def check_role(role: str) -> Role:
    """The :class:`Role` called ``role``, else :class:`UsageError` naming it."""
    try:
        return Role(role)
    except ValueError:
        raise UsageError(f"invalid role {role!r}: expected one of {[r.value for r in Role]}") from None


def check_password(password: str) -> str:
    """Return ``password`` if it is long enough, else raise :class:`UsageError`."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return password


def find_user(session: Session, name: str) -> User | None:
    """The user called ``name``, or None."""
    return session.scalars(select(User).where(User.username == name)).first()


def create_user(session: Session, name: str, role: str, password: str, actor: str) -> User:
    """Add a user to ``session`` (with an audit row); raise :class:`UsageError` for bad or taken names."""
    check_username(name)
    checked_role = check_role(role)
    check_password(password)
    if find_user(session, name) is not None:
        raise UsageError(f"user {name!r} already exists")
    user = User(username=name, role=checked_role.value, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    audit(session, actor, "user.add", name, role=checked_role.value)
    return user


def add_user(factory: sessionmaker[Session], name: str, role: str, password: str) -> None:
    """Create the web user ``name`` with ``role`` and ``password`` (the ``triage user add`` command).

    Parameters
    ----------
    factory
        Session factory of the database.
    name
        User name (letters, digits, ``._@-``; at most 64 characters).
    role
        ``admin`` or ``radiologist``.
    password
        At least 8 characters; stored as a salted scrypt hash.

    Raises
    ------
    UsageError
        Invalid name, role or password, or the name is taken.
    """
    with transaction(factory) as session:
        create_user(session, name, role, password, actor="cli")


def new_token(session: Session, user: User, actor: str) -> tuple[str, ApiToken]:
    """Create an API token for ``user`` in ``session``; return the token (shown once) and its row."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, token_hash=hash_token(token))
    session.add(row)
    session.flush()
    audit(session, actor, "token.issue", user.username, token_id=row.id)
    return token, row


def issue_token(factory: sessionmaker[Session], name: str) -> str:
    """Create and return a new API token for user ``name`` (the ``triage user token`` command).

    Only the token's SHA-256 hash is stored; the token itself cannot be shown again.

    Raises
    ------
    UsageError
        No such user, or the user is disabled.
    """
    with transaction(factory) as session:
        user = find_user(session, name)
        if user is None:
            raise UsageError(f"no user called {name!r}: create it with `triage user add {name} --role ...`")
        if user.disabled:
            raise UsageError(f"user {name!r} is disabled")
        token, _ = new_token(session, user, actor="cli")
    return token


def authenticate(session: Session, name: str, password: str) -> User | None:
    """The enabled user ``name`` if ``password`` is right, else None (equal work either way)."""
    user = find_user(session, name) if USERNAME.match(name) else None
    ok = verify_password(password, user.password_hash if user is not None else _DUMMY_HASH)
    if user is None or not ok or user.disabled:
        return None
    return user


def user_for_token(session: Session, token: str) -> User | None:
    """The enabled user an API token belongs to, or None; notes when the token was last used."""
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).first()
    if row is None or row.user.disabled:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > TOKEN_TOUCH_INTERVAL:
        row.last_used_at = now
        session.commit()
    return row.user


def count_users(factory: sessionmaker[Session]) -> int:
    """How many users exist (any role, disabled included)."""
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(User)) or 0)
