"""The schema is made by Alembic only, and the models agree with it (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from triage.db import migrate
from triage.db.engine import create_db_engine, session_factory, transaction
from triage.db.models import Base, Instance, Series, Study
from triage.db.thresholds import load_thresholds, seed_thresholds
from triage.domain import CLASSES


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
