"""Alembic commands (upgrade, downgrade, current) against a given database URL."""

from __future__ import annotations

import io
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from alembic import command
from triage.db.engine import create_db_engine

#: The migrations live beside the package (repository root): ``alembic.ini`` and ``alembic/``.
ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_url: str) -> Config:
    """An Alembic :class:`Config` for the project's migrations and ``database_url``."""
    ini = ROOT / "alembic.ini"
    config = Config(str(ini)) if ini.exists() else Config()
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database up to ``revision``."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base`` removes every table)."""
    command.downgrade(alembic_config(database_url), revision)


def current(database_url: str) -> str | None:
    """The revision the database is at, or None for an empty database."""
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head() -> str | None:
    """The newest revision of the migration scripts."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def is_current(database_url: str) -> bool:
    """Whether the database is migrated to the newest revision."""
    return current(database_url) == head()


def history() -> str:
    """The migration history as text."""
    buffer = io.StringIO()
    config = alembic_config("sqlite://")
    config.stdout = buffer
    command.history(config)
    return buffer.getvalue()
