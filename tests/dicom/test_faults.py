"""Real faults while receiving: the store unusable, the database unavailable -> 0xA700, nothing half
written, the receiver keeps serving and recovers when the fault is removed."""

from __future__ import annotations

import resource
import shutil
import signal
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.dicom.conftest import echoscu, store_files, storescu
from tests.dicom.ctgen import ct_series, write_series
from triage.db import engine as engine_module
from triage.db.engine import create_db_engine, session_factory
from triage.dicom.server import DicomServer


def statuses(output: str) -> list[str]:
    return [line.split("(", 1)[1].rstrip(")") for line in output.splitlines() if "Received Store Response" in line]


def assert_serves_and_recovers(server: DicomServer, paths: list[Path], rows, store: Path, fault) -> None:
    with fault():
        result = storescu(server.port, *paths, extra=("--no-halt",))
        assert statuses(result.stderr) == ["Refused: OutOfResources"] * len(paths), result.stderr
        assert echoscu(server.port).returncode == 0  # still serving
    assert list(store.rglob("*.dcm")) == [] and list(store.rglob("*.part")) == []
    assert rows() == ([], [])
    result = storescu(server.port, *paths)
    assert statuses(result.stderr) == ["Success"] * len(paths), result.stderr
    assert len(rows()[0]) == len(paths) and len(store_files(store)) == len(paths)


def test_an_unusable_store_gets_0xa700(scp: DicomServer, scp_settings, tmp_path: Path, rows) -> None:
    paths = write_series(tmp_path / "in", ct_series(3, seed=1))
    store = scp_settings.store

    @contextmanager
    def store_replaced_by_a_file() -> Iterator[None]:
        aside = store.with_name("store-aside")
        store.rename(aside)
        store.write_bytes(b"not a directory")
        try:
            yield
        finally:
            store.unlink()
            aside.rename(store)

    assert_serves_and_recovers(scp, paths, rows, store, store_replaced_by_a_file)


def test_a_write_that_fails_half_way_gets_0xa700(scp: DicomServer, scp_settings, tmp_path: Path, rows) -> None:
    """The kernel refuses to grow files past 16 KiB (RLIMIT_FSIZE, as a full disk would refuse): every
    slice (33 KiB) fails in the middle of its write."""
    paths = write_series(tmp_path / "in", ct_series(3, seed=2, rows=128))

    @contextmanager
    def file_size_limit() -> Iterator[None]:
        previous_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
        previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16384, previous_limit[1]))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, previous_limit)
            signal.signal(signal.SIGXFSZ, previous_handler)

    assert_serves_and_recovers(scp, paths, rows, scp_settings.store, file_size_limit)


def test_an_unavailable_database_gets_0xa700(scp_settings, database_url: str, postgres, is_postgres: bool,
                                             tmp_path: Path, rows, monkeypatch: pytest.MonkeyPatch) -> None:
    if is_postgres:
        fault = _postgres_refuses_connections(postgres, database_url)
    else:
        # a real lock held by another process-like connection; the receiver waits 1 s instead of 30
        monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 1000)
        fault = _sqlite_locked(database_url)
    engine = create_db_engine(database_url)
    server = DicomServer(scp_settings, session_factory(engine))
    server.start()
    try:
        paths = write_series(tmp_path / "in", ct_series(3, seed=3))
        assert_serves_and_recovers(server, paths, rows, scp_settings.store, fault)
    finally:
        server.stop()
        engine.dispose()


def _sqlite_locked(url: str):
    @contextmanager
    def locked() -> Iterator[None]:
        holder = sqlite3.connect(make_url(url).database, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    return locked


def _postgres_refuses_connections(postgres, url: str):
    name = make_url(url).database

    @contextmanager
    def refused() -> Iterator[None]:
        with postgres.admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
        try:
            yield
        finally:
            with postgres.admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))

    return refused


def test_the_store_directory_is_recreated_after_it_vanished(scp: DicomServer, scp_settings, tmp_path: Path,
                                                            rows) -> None:
    shutil.rmtree(scp_settings.store)
    paths = write_series(tmp_path / "in", ct_series(2, seed=4))
    result = storescu(scp.port, *paths)
    assert statuses(result.stderr) == ["Success"] * 2, result.stderr
