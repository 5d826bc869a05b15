"""One received instance, from its encoded bytes to a DICOM status: validate, store durably, commit its row.

The status is success only after the file is fsynced (and its directory) and the row committed; any
failure on the way answers the status of DESIGN.md section 5 and leaves neither a file nor a row.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from functools import partial

from triage.config import SeriesSettings
from triage.db.ingest import InstanceHeader, Recorded, is_stored, record_instance
from triage.dicom import metrics
from triage.dicom.commit import GroupCommitter
from triage.dicom.header import OUT_OF_RESOURCES, SUCCESS, Rejection, read_header
from triage.dicom.store import DicomStore, StoredFile

LOGGER = logging.getLogger(__name__)


class Receiver:
    """Turns received instances into durable files and rows.

    Parameters
    ----------
    store
        The durable file store.
    committer
        Runs the database work (shared transactions across associations).
    series_settings
        For the series gate when a series turns out to be complete.
    on_stored
        Called after each new instance is durable (the daemon wakes the worker with it).
    """

    def __init__(
        self,
        store: DicomStore,
        committer: GroupCommitter,
        series_settings: SeriesSettings,
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.committer = committer
        self.series_settings = series_settings
        self.on_stored = on_stored

    def receive(
        self, data: bytes, *, sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, calling_aet: str
    ) -> int:
        """Store one instance and return the DICOM status to answer.

        Parameters
        ----------
        data
            The instance in DICOM file format, exactly as received (no decode/re-encode).
        sop_class_uid, sop_instance_uid
            Affected SOP Class / Instance UID of the C-STORE request.
        transfer_syntax_uid
            The accepted transfer syntax of its presentation context.
        calling_aet
            The sender's AE title.
        """
        started = time.perf_counter()
        try:
            header = read_header(
                data,
                sop_class_uid=sop_class_uid,
                sop_instance_uid=sop_instance_uid,
                transfer_syntax_uid=transfer_syntax_uid,
            )
            relative = DicomStore.relative_path(header.study_uid, header.series_uid, header.sop_instance_uid)
        except Rejection as exc:
            LOGGER.warning("rejected an instance from %s: %s", calling_aet, exc)
            metrics.rejected(exc.reason, exc.status)
            return exc.status
        status = self._store(data, header, relative, calling_aet)
        metrics.STORE_SECONDS.observe(time.perf_counter() - started)
        return status

    def _store(self, data: bytes, header: InstanceHeader, relative: str, calling_aet: str) -> int:
        if self.store.exists(relative) and self._known(header.sop_instance_uid):
            metrics.DUPLICATES.inc()
            return SUCCESS
        try:
            stored = self.store.write(relative, data)
        except OSError as exc:
            LOGGER.error("cannot write to the store (%s): answering 0xA700", exc.strerror or type(exc).__name__)
            metrics.rejected("storage", OUT_OF_RESOURCES)
            return OUT_OF_RESOURCES
        try:
            recorded = self.committer.run(self._work(header, stored, calling_aet))
        except Exception as exc:
            if stored.created:
                self.store.discard(relative)
            LOGGER.error("cannot commit the instance row (%s): answering 0xA700", _describe(exc))
            metrics.rejected("database", OUT_OF_RESOURCES)
            return OUT_OF_RESOURCES
        if recorded.duplicate:
            if stored.created and recorded.path != relative:
                self.store.discard(relative)
            metrics.DUPLICATES.inc()
            return SUCCESS
        metrics.INSTANCES_STORED.inc()
        if self.on_stored is not None:
            self.on_stored()
        return SUCCESS

    def _work(self, header: InstanceHeader, stored: StoredFile, calling_aet: str) -> partial[Recorded]:
        return partial(
            record_instance,
            header=header,
            path=stored.relative,
            size_bytes=stored.size,
            calling_aet=calling_aet,
            now=dt.datetime.now(dt.UTC),
            series_settings=self.series_settings,
        )

    def _known(self, sop_instance_uid: str) -> bool:
        """Whether the instance has a row already (a resend): False when the database cannot tell."""
        try:
            with self.committer.factory() as session:
                return is_stored(session, sop_instance_uid)
        except Exception as exc:
            LOGGER.warning("cannot look up an instance (%s)", _describe(exc))
            return False


def _describe(exc: BaseException) -> str:
    """The exception's type and first line, without SQL parameters (they may hold patient data)."""
    first = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first[:200]}"
