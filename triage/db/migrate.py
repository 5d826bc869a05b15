"""Alembic commands (upgrade, downgrade, current) against a given database URL."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from alembic import command
from triage.db.engine import create_db_engine
from triage.errors import TriageError

#: Where ``alembic.ini`` and ``alembic/`` are looked for: beside the package (a checkout or an editable
#: install), then ``<prefix>/share/triage`` (where a wheel or ``pip install .`` puts them, setup.cfg).
SEARCH = (Path(__file__).resolve().parents[2], Path(sys.prefix) / "share" / "triage")


def migrations_root(search: tuple[Path, ...] = SEARCH) -> Path:
    """The first folder of ``search`` that holds ``alembic/env.py``."""
    for root in search:
        if (root / "alembic" / "env.py").is_file():
            return root
    raise TriageError(f"the Alembic migrations are missing: no alembic/env.py in {[str(r) for r in search]} "
                      "(install triage with pip from its source tree)")


def alembic_config(database_url: str) -> Config:
    """An Alembic :class:`Config` for the project's migrations and ``database_url``."""
    root = migrations_root()
    ini = root / "alembic.ini"
    config = Config(str(ini)) if ini.exists() else Config()
    config.set_main_option("script_location", str(root / "alembic"))
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
