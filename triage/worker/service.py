"""The worker role (shell until the Worker issue lands)."""

from __future__ import annotations

import logging

from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings

LOGGER = logging.getLogger(__name__)


class WorkerService:
    """Registers the worker's scheduler jobs."""

    name = "worker"

    def __init__(self, settings: Settings, factory: sessionmaker[Session], scheduler: BaseScheduler) -> None:
        self.settings = settings
        self.factory = factory
        self.scheduler = scheduler

    def start(self) -> None:
        LOGGER.warning("the classification worker is not built yet: series stay queued")

    def stop(self) -> None:
        pass
