"""The schema is made by Alembic only, and the models agree with it (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import zipfile

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from tests.helpers import REPO
from triage.db import migrate
from triage.db.engine import create_db_engine, session_factory, transaction
from triage.db.models import Base, Instance, Series, Study, Threshold
from triage.db.thresholds import load_thresholds, seed_thresholds
from triage.domain import CLASSES
from triage.errors import TriageError


def _tables(url: str) -> set[str]:
    engine = create_db_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    assert migrate.current(empty_database_url) is None
    migrate.upgrade(empty_database_url)
    assert migrate.current(empty_database_url) == migrate.head()
    assert _tables(empty_database_url) == set(Base.metadata.tables)
    migrate.downgrade(empty_database_url, "base")
    assert migrate.current(empty_database_url) is None
    assert _tables(empty_database_url) == set()
    migrate.upgrade(empty_database_url)
    assert migrate.is_current(empty_database_url)


def test_models_match_migrated_schema(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_round_trip_keeps_utc_and_cascades(factory) -> None:
    stamp = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with transaction(factory) as s:
        study = Study(study_uid="1.2.3", first_received_at=stamp)
        series = Series(study=study, series_uid="1.2.3.4")
        s.add(Instance(series=series, sop_instance_uid="1.2.3.4.5", sop_class_uid="1.2", path="a", size_bytes=1))
    with factory() as s:
        got = s.scalars(select(Study)).one()
        assert got.first_received_at == stamp and got.first_received_at.tzinfo == dt.UTC
    with transaction(factory) as s:
        s.delete(s.scalars(select(Study)).one())
    with factory() as s:
        assert s.scalars(select(Instance)).all() == []


def test_thresholds_seeded_once(factory) -> None:
    seed_thresholds(factory, dict.fromkeys(CLASSES, 0.4))
    seed_thresholds(factory, dict.fromkeys(CLASSES, 0.9))  # admin's rows stay
    with factory() as s:
        thresholds, enabled = load_thresholds(s)
    assert thresholds == dict.fromkeys(CLASSES, 0.4)
    assert all(enabled.values())


def test_thresholds_seeded_by_two_processes_starting_together(factory) -> None:
    """A second daemon seeds while the first one's rows are inserted but not yet committed."""
    errors: list[BaseException] = []

    def second() -> None:
        try:
            seed_thresholds(factory, dict.fromkeys(CLASSES, 0.9))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    with factory() as first, first.begin():
        first.add_all(Threshold(class_name=name, threshold=0.4, alert_enabled=True) for name in CLASSES)
        first.flush()
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)  # blocked on the first one's rows (PostgreSQL) or its write lock (SQLite)
    thread.join(30)
    assert not thread.is_alive() and errors == []
    with factory() as s:
        assert load_thresholds(s)[0] == dict.fromkeys(CLASSES, 0.4)


def test_migrations_are_found_beside_the_package_or_under_the_prefix(tmp_path) -> None:
    checkout, prefix = tmp_path / "checkout", tmp_path / "share" / "triage"
    (prefix / "alembic").mkdir(parents=True)
    (prefix / "alembic" / "env.py").write_text("")
    assert migrate.migrations_root((checkout, prefix)) == prefix  # a wheel install: no checkout
    (checkout / "alembic").mkdir(parents=True)
    (checkout / "alembic" / "env.py").write_text("")
    assert migrate.migrations_root((checkout, prefix)) == checkout  # a checkout wins
    with pytest.raises(TriageError, match="migrations are missing"):
        migrate.migrations_root((tmp_path / "nowhere",))


def test_wheel_carries_the_migrations(tmp_path) -> None:
    """`pip install .` (not editable) gets alembic.ini and alembic/ under <prefix>/share/triage."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("triage-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = next(n.split("/share/")[0] for n in names if "/share/triage/" in n)
    expected = {"alembic.ini", "alembic/env.py", "alembic/script.py.mako"} | {
        f"alembic/versions/{p.name}" for p in (REPO / "alembic" / "versions").glob("*.py")}
    assert {f"{data}/share/triage/{name}" for name in expected} <= names


def test_engine_pragmas_on_sqlite(tmp_path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        engine.dispose()
    assert session_factory(engine).kw["expire_on_commit"] is False
