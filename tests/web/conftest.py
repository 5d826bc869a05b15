"""Fixtures of the web tests: the app around the fresh database, users, logged-in clients."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.web import factories as f
from triage.config import Settings, load_settings
from triage.db.engine import transaction
from triage.web.app import create_app
from triage.web.users import new_token

SECRET = "test-secret-key-0123456789abcdef"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def web_settings(settings: Settings) -> Settings:
    """The test settings with a secret key and an existing store directory."""
    out = load_settings(data_dir=settings.data_dir, database_url=settings.database_url,
                        web={"secret_key": SECRET})
    out.store.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def app(web_settings: Settings, factory: sessionmaker[Session]) -> FastAPI:
    return create_app(web_settings, factory)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def people(factory: sessionmaker[Session]) -> dict[str, str]:
    """Users ``rad`` (radiologist), ``boss`` (admin), ``gone`` (disabled); name -> role."""
    with transaction(factory) as s:
        f.thresholds(s)
        f.user(s, "rad", "radiologist")
        f.user(s, "boss", "admin")
        f.user(s, "gone", "radiologist", disabled=True)
    return {"rad": "radiologist", "boss": "admin", "gone": "radiologist"}


def login(client: TestClient, name: str, password: str = f.PASSWORD) -> str:
    """Log ``client`` in as ``name``; return the session's CSRF token."""
    page = client.get("/login")
    token = CSRF_FIELD.search(page.text)
    assert token, page.text
    response = client.post("/login", data={"username": name, "password": password, "csrf_token": token.group(1),
                                           "next": "/"}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return csrf_of(client)


def csrf_of(client: TestClient) -> str:
    """The CSRF token the pages of the current session carry."""
    match = CSRF_META.search(client.get("/").text)
    assert match and match.group(1)
    return match.group(1)


@dataclass
class Browser:
    """A logged-in TestClient and its CSRF token."""

    client: TestClient
    csrf: str

    def post(self, url: str, **kwargs: object):  # noqa: ANN201
        headers = dict(kwargs.pop("headers", {}) or {})  # type: ignore[call-overload]
        headers.setdefault("X-CSRF-Token", self.csrf)
        return self.client.post(url, headers=headers, follow_redirects=False, **kwargs)  # type: ignore[arg-type]

    def form(self, url: str, data: dict[str, object]):  # noqa: ANN201
        return self.client.post(url, data={"csrf_token": self.csrf, **data}, follow_redirects=False)  # type: ignore[arg-type]


@pytest.fixture
def radiologist(client: TestClient, people: dict[str, str]) -> Browser:
    return Browser(client, login(client, "rad"))


@pytest.fixture
def admin(client: TestClient, people: dict[str, str]) -> Browser:
    return Browser(client, login(client, "boss"))


@pytest.fixture
def token(factory: sessionmaker[Session], people: dict[str, str]) -> str:
    """An API token of the radiologist ``rad``."""
    from triage.web.users import find_user

    with transaction(factory) as s:
        user = find_user(s, "rad")
        assert user is not None
        value, _ = new_token(s, user, "test")
    return value


@pytest.fixture
def admin_token(factory: sessionmaker[Session], people: dict[str, str]) -> str:
    """An API token of the admin ``boss``."""
    from triage.web.users import find_user

    with transaction(factory) as s:
        user = find_user(s, "boss")
        assert user is not None
        value, _ = new_token(s, user, "test")
    return value
