"""Shared fixtures: a fresh migrated database per test (SQLite, or PostgreSQL when
TRIAGE_TEST_DATABASE_URL names a server), settings around it, free ports."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from triage.config import Settings, load_settings
from triage.db import migrate
from triage.db.engine import create_db_engine, session_factory

#: When set (e.g. postgresql+psycopg://postgres@127.0.0.1/test), every test database is a fresh
#: PostgreSQL database created on that server and dropped after; otherwise a fresh SQLite file.
PG_ENV = "TRIAGE_TEST_DATABASE_URL"


class PostgresDatabases:
    """Creates and drops databases on the server of the admin URL; clones a migrated template."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = make_url(admin_url)
        self.admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT", pool_size=1)
        self.created: list[str] = []
        self.template: str | None = None

    def url(self, name: str) -> str:
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def create(self, *, migrated: bool) -> str:
        name = f"triage_t_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as conn:
            if migrated:
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self._template()}"'))
            else:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return self.url(name)

    def _template(self) -> str:
        if self.template is None:
            name = f"triage_tmpl_{uuid.uuid4().hex[:12]}"
            with self.admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            self.created.append(name)
            migrate.upgrade(self.url(name))
            self.template = name
        return self.template

    def drop(self, url: str) -> None:
        name = make_url(url).database
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if name in self.created:
            self.created.remove(name)

    def close(self) -> None:
        for name in list(self.created):
            with self.admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases | None]:
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        yield None
        return
    dbs = PostgresDatabases(admin_url)
    try:
        yield dbs
    finally:
        dbs.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def empty_database_url(postgres: PostgresDatabases | None, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all (for migration tests)."""
    if postgres is None:
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    url = postgres.create(migrated=False)
    yield url
    postgres.drop(url)


@pytest.fixture
def database_url(postgres: PostgresDatabases | None, sqlite_template: Path, tmp_path: Path) -> Iterator[str]:
    """A fresh database migrated to head."""
    if postgres is None:
        path = tmp_path / "triage.db"
        path.write_bytes(sqlite_template.read_bytes())
        yield f"sqlite:///{path}"
        return
    url = postgres.create(migrated=True)
    yield url
    postgres.drop(url)


@pytest.fixture
def settings(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings around the fresh database, with data and store under ``tmp_path``; no TRIAGE_* leaks in."""
    for key in list(os.environ):
        if key.startswith("TRIAGE_") and key != PG_ENV:
            monkeypatch.delenv(key)
    return load_settings(data_dir=tmp_path / "data", database_url=database_url)


@pytest.fixture
def engine(database_url: str):  # noqa: ANN201
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine):  # noqa: ANN001, ANN201
    """The session factory of the fresh database."""
    return session_factory(engine)


@pytest.fixture
def is_postgres(postgres: PostgresDatabases | None) -> bool:
    return postgres is not None


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained two-stage resnet18 model directory at 224 (quick to load and run)."""
    from triage.model import save_random_model

    return save_random_model(tmp_path_factory.mktemp("model") / "m", backbone="resnet18", image_size=224)
