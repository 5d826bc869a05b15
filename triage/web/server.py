"""The web role (shell until the Web issue lands)."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings

LOGGER = logging.getLogger(__name__)


class WebServer:
    """Serves the web application with uvicorn in a thread."""

    name = "web"

    def __init__(self, settings: Settings, factory: sessionmaker[Session]) -> None:
        self.settings = settings
        self.factory = factory

    def start(self) -> None:
        LOGGER.warning("the web application is not built yet: no port is opened")

    def stop(self) -> None:
        pass
