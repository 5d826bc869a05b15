"""The alert dispatcher (shell until the Alerts issue lands)."""

from __future__ import annotations

import logging

from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings

LOGGER = logging.getLogger(__name__)


class AlertService:
    """Registers the dispatcher's scheduler jobs."""

    name = "alerts"

    def __init__(self, settings: Settings, factory: sessionmaker[Session], scheduler: BaseScheduler) -> None:
        self.settings = settings
        self.factory = factory
        self.scheduler = scheduler

    def start(self) -> None:
        LOGGER.warning("the alert dispatcher is not built yet: alerts stay in the outbox")

    def stop(self) -> None:
        pass
