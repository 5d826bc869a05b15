"""Fixtures of the DICOM tests: a running receiver on a free port and DCMTK as the peer."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings
from triage.db.models import Instance, Series
from triage.dicom.server import DicomServer

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


@pytest.fixture
def scp_settings(settings: Settings) -> Settings:
    settings.dicom.host = "127.0.0.1"
    settings.dicom.port = 0
    return settings


@pytest.fixture
def scp(scp_settings: Settings, factory: sessionmaker[Session]) -> Iterator[DicomServer]:
    """A started receiver on a free port of 127.0.0.1."""
    server = DicomServer(scp_settings, factory)
    server.start()
    yield server
    server.stop(grace_seconds=2)


def storescu(port: int, *paths: Path | str, aet: str = "STORESCU", extra: tuple[str, ...] = (),
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """DCMTK storescu sending ``paths`` to TRIAGE on 127.0.0.1:``port`` (verbose, so statuses are in stderr)."""
    return subprocess.run(
        ["storescu", "-v", "-aet", aet, "-aec", "TRIAGE", *extra, "127.0.0.1", str(port), *map(str, paths)],
        env=DCMTK_ENV, capture_output=True, text=True, timeout=timeout,
    )


def echoscu(port: int, aet: str = "ECHOSCU", extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """DCMTK echoscu against TRIAGE on 127.0.0.1:``port``."""
    return subprocess.run(
        ["echoscu", "-v", "-aet", aet, "-aec", "TRIAGE", *extra, "127.0.0.1", str(port)],
        env=DCMTK_ENV, capture_output=True, text=True, timeout=60,
    )


@pytest.fixture
def rows(factory: sessionmaker[Session]) -> Callable[[], tuple[list[Instance], list[Series]]]:
    """Read every instance and series row."""

    def read() -> tuple[list[Instance], list[Series]]:
        with factory() as session:
            return (list(session.scalars(select(Instance).order_by(Instance.id))),
                    list(session.scalars(select(Series).order_by(Series.id))))

    return read


def store_files(store: Path) -> list[Path]:
    """Every file in the store but the temporary directory."""
    return sorted(p for p in store.rglob("*") if p.is_file() and ".incoming" not in p.parts)
