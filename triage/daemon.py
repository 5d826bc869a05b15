"""The one place that wires a running system: engine, DICOM server, scheduler, web app; signals; ordered stop."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Protocol

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings, prepare_directories
from triage.db import migrate
from triage.db.engine import create_db_engine, session_factory
from triage.db.thresholds import seed_thresholds
from triage.errors import ConfigError

LOGGER = logging.getLogger(__name__)


#: The order in which services stop (the scheduler stops right before the web).
STOP_ORDER = ("dicom", "worker", "alerts", "web")


class Service(Protocol):
    """A part of the running daemon: started once, stopped once, in the daemon's order."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


def open_database(settings: Settings, *, require_current: bool = True) -> tuple[Engine, sessionmaker[Session]]:
    """Engine and session factory for the configured database, checked to be reachable and migrated."""
    engine = create_db_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        raise ConfigError("database_url", _safe(settings), f"cannot connect ({type(exc).__name__})") from None
    if require_current and not migrate.is_current(settings.database_url):
        engine.dispose()
        raise ConfigError(
            "database_url", _safe(settings), "the database schema is not current: run `triage init`"
        )
    return engine, session_factory(engine)


def _safe(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.database_url).render_as_string(hide_password=True)


def initialise(settings: Settings) -> None:
    """Migrate the database to the newest schema and seed the admin tables from the settings."""
    migrate.upgrade(settings.database_url)
    engine, factory = open_database(settings)
    try:
        seed_thresholds(factory, settings.thresholds.model_dump())
    finally:
        engine.dispose()


def build_scheduler() -> BackgroundScheduler:
    """The worker's scheduler: one instance per job, missed runs coalesced (FlexGet's defaults)."""
    return BackgroundScheduler(
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
        timezone="UTC",
    )


class Daemon:
    """The services of the asked roles around one engine; :meth:`stop` undoes :meth:`start` in order."""

    def __init__(self, settings: Settings, roles: Sequence[str]) -> None:
        self.settings = settings
        self.roles = tuple(roles)
        self.engine: Engine | None = None
        self.factory: sessionmaker[Session] | None = None
        self.scheduler: BackgroundScheduler | None = None
        self.services: list[Service] = []
        self._stopped = threading.Event()

    def start(self) -> None:
        """Open the database, build and start every service of the roles."""
        prepare_directories(self.settings)
        self.engine, self.factory = open_database(self.settings)
        seed_thresholds(self.factory, self.settings.thresholds.model_dump())
        if "worker" in self.roles:
            self.scheduler = build_scheduler()
        try:
            for role in self.roles:
                for service in self._build(role):
                    service.start()
                    self.services.append(service)
                    LOGGER.info("%s started", service.name)
            self._connect()
            if self.scheduler is not None:
                self.scheduler.start()
        except BaseException:
            self.stop()
            raise

    def _connect(self) -> None:
        """In one process, a stored slice wakes the worker at once (else it polls the database)."""
        if not {"scp", "worker"} <= set(self.roles):
            return
        from triage.dicom.server import DicomServer
        from triage.worker.service import WorkerService

        dicom = [s for s in self.services if isinstance(s, DicomServer)]
        worker = [s for s in self.services if isinstance(s, WorkerService)]
        if dicom and worker:
            dicom[0].listeners.append(worker[0].notify)

    def _build(self, role: str) -> list[Service]:
        assert self.factory is not None  # noqa: S101
        if role == "scp":
            from triage.dicom.server import DicomServer

            return [DicomServer(self.settings, self.factory)]
        if role == "worker":
            from triage.alerts.dispatcher import AlertService
            from triage.worker.service import WorkerService

            assert self.scheduler is not None  # noqa: S101
            return [
                WorkerService(self.settings, self.factory, self.scheduler),
                AlertService(self.settings, self.factory, self.scheduler),
            ]
        if role == "web":
            from triage.web.server import WebServer

            return [WebServer(self.settings, self.factory)]
        raise ValueError(f"unknown role {role!r}")

    def stop(self) -> None:
        """Stop in order: no new associations; the worker stops between batches and hands its leases back;
        the dispatcher; the scheduler waits for running jobs; the web; the database."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        order = {name: rank for rank, name in enumerate(STOP_ORDER)}
        for service in sorted(self.services, key=lambda s: order.get(s.name, len(order))):
            if service.name == "web" and self.scheduler is not None and self.scheduler.running:
                self.scheduler.shutdown(wait=True)
            self._stop_one(service)
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self.engine is not None:
            self.engine.dispose()
        LOGGER.info("stopped")

    @staticmethod
    def _stop_one(service: Service) -> None:
        try:
            service.stop()
            LOGGER.info("%s stopped", service.name)
        except Exception:
            LOGGER.exception("%s did not stop cleanly", service.name)


def run(settings: Settings, roles: Sequence[str]) -> int:
    """Run ``roles`` until SIGTERM or SIGINT, then stop in order. Returns the exit code."""
    logging.getLogger().setLevel(settings.log_level)
    daemon = Daemon(settings, roles)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        LOGGER.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        daemon.start()
        LOGGER.info("triage running (pid %d, roles %s)", os.getpid(), ",".join(roles))
        while not stop.wait(1.0):
            pass
    finally:
        daemon.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0

