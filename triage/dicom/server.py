"""The DICOM listener (shell until the DICOM ingest issue lands: it logs and accepts nothing)."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings

LOGGER = logging.getLogger(__name__)


class DicomServer:
    """The SCP role."""

    name = "dicom"

    def __init__(self, settings: Settings, factory: sessionmaker[Session]) -> None:
        self.settings = settings
        self.factory = factory

    def start(self) -> None:
        LOGGER.warning("the DICOM receiver is not built yet: no port is opened")

    def stop(self) -> None:
        pass
