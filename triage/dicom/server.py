"""The SCP role: a pynetdicom AE serving C-ECHO and C-STORE with the association policy of the settings."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer
from sqlalchemy.orm import Session, sessionmaker

from triage.config import DicomSettings, Settings
from triage.dicom import handlers
from triage.dicom.allowlist import AllowedAETs
from triage.dicom.commit import GroupCommitter
from triage.dicom.contexts import supported_contexts
from triage.dicom.receiver import Receiver
from triage.dicom.store import DicomStore
from triage.errors import ConfigError

LOGGER = logging.getLogger(__name__)

#: How long :meth:`DicomServer.stop` lets running associations finish before aborting them.
STOP_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Tuning:
    """Receive-path switches measured by ``benchmarks/ingest.py`` (the defaults are the measured best).

    Attributes
    ----------
    tcp_nodelay
        Turn Nagle's algorithm off on accepted sockets.
    group_commit
        Let concurrent associations share database transactions.
    """

    tcp_nodelay: bool = True
    group_commit: bool = True


class DicomServer:
    """The DICOM receiver: Verification and storage SCP on ``[dicom] host:port``.

    Parameters
    ----------
    settings
        ``dicom`` (AE title, address, allow list, limits, timeouts, TLS), ``series`` and the store.
    factory
        The process's session factory.
    tuning
        Receive-path switches (for the benchmark).
    """

    name = "dicom"

    def __init__(self, settings: Settings, factory: sessionmaker[Session], tuning: Tuning | None = None) -> None:
        self.settings = settings
        self.factory = factory
        self.tuning = tuning or Tuning()
        self.ae: AE | None = None
        self.committer = GroupCommitter(factory, enabled=self.tuning.group_commit)
        self.allowed = AllowedAETs(settings.dicom.allowed_aets, factory)
        self._server: ThreadedAssociationServer | None = None
        self.port: int = settings.dicom.port
        #: Called after each newly stored instance (the daemon adds the worker's wake-up here).
        self.listeners: list[Callable[[], None]] = []

    def start(self) -> None:
        """Prepare the store and listen (non-blocking); ``port`` is then the bound port."""
        store = DicomStore(self.settings.store)
        store.prepare()
        receiver = Receiver(store, self.committer, self.settings.series, on_stored=self._stored)
        self.ae = build_ae(self.settings.dicom)
        evt_handlers: list[tuple[evt.EventType, object] | tuple[evt.EventType, object, list[object]]] = [
            (evt.EVT_C_ECHO, handlers.handle_echo),
            (evt.EVT_C_STORE, handlers.handle_store, [receiver]),
            (evt.EVT_REQUESTED, handlers.handle_requested, [self.allowed]),
            (evt.EVT_CONN_OPEN, handlers.handle_conn_open, [self.tuning.tcp_nodelay]),
            (evt.EVT_ACCEPTED, handlers.handle_accepted),
            (evt.EVT_REJECTED, handlers.handle_rejected),
            (evt.EVT_ABORTED, handlers.handle_aborted),
        ]
        dicom = self.settings.dicom
        context = tls_context(dicom)
        try:
            self._server = self.ae.start_server(
                (dicom.host, dicom.port),
                block=False,
                evt_handlers=evt_handlers,  # type: ignore[arg-type]
                ssl_context=context,
            )
        except OSError as exc:
            reason = f"cannot listen on {dicom.host}:{dicom.port} ({exc.strerror or exc})"
            raise ConfigError("dicom.port", dicom.port, reason) from None
        assert self._server is not None  # noqa: S101 - non-blocking start returns the server
        self.port = int(self._server.server_address[1])
        LOGGER.info(
            "DICOM receiver %s listening on %s:%d%s", dicom.ae_title, dicom.host, self.port,
            " (TLS)" if dicom.tls_cert else "",
        )

    def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Stop accepting associations, let running ones finish for ``grace_seconds``, abort the rest."""
        if self._server is None or self.ae is None:
            return
        server, self._server = self._server, None
        server.shutdown()
        deadline = time.monotonic() + grace_seconds
        while server.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        running = server.active_associations
        if running:
            LOGGER.warning("aborting %d association(s) still running after %.0f s", len(running), grace_seconds)
        self.ae.shutdown()
        for assoc in running:
            if assoc is not threading.current_thread():
                assoc.join(timeout=2.0)

    def _stored(self) -> None:
        for listener in self.listeners:
            listener()

    @property
    def active_associations(self) -> int:
        """Number of associations being served now."""
        return 0 if self._server is None else len(self._server.active_associations)


def build_ae(dicom: DicomSettings) -> AE:
    """The application entity: AE title, contexts, limits and timeouts from ``[dicom]``."""
    ae = AE(ae_title=dicom.ae_title)
    ae.supported_contexts = supported_contexts()
    ae.maximum_associations = dicom.max_associations
    ae.maximum_pdu_size = dicom.max_pdu_size
    ae.acse_timeout = dicom.acse_timeout
    ae.dimse_timeout = dicom.dimse_timeout
    ae.network_timeout = dicom.network_timeout
    return ae


def tls_context(dicom: DicomSettings) -> ssl.SSLContext | None:
    """The server's TLS context when ``tls_cert``/``tls_key`` are set (PS3.15 basic TLS profile), else None.

    With ``tls_ca`` the peer must present a certificate signed by that CA.

    Raises
    ------
    ConfigError
        When a file cannot be read or the key does not match the certificate.
    """
    if not dicom.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(dicom.tls_cert, dicom.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("dicom.tls_cert", dicom.tls_cert, f"cannot load certificate and key ({exc})") from None
    if dicom.tls_ca:
        try:
            context.load_verify_locations(cafile=dicom.tls_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("dicom.tls_ca", dicom.tls_ca, f"cannot load the CA certificates ({exc})") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context
