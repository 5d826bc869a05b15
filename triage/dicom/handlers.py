"""pynetdicom event handlers of the SCP; each gets its dependencies as bound arguments, no globals."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import cast

from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.pdu_primitives import A_ASSOCIATE

from triage.dicom import metrics
from triage.dicom.allowlist import AllowedAETs
from triage.dicom.header import OUT_OF_RESOURCES, SUCCESS, Rejection, check_sop_class
from triage.dicom.receiver import Receiver

LOGGER = logging.getLogger(__name__)

#: A-ASSOCIATE-RJ: rejected permanent, by the service user, calling AE title not recognised.
REJECT_CALLING_AET = (0x01, 0x01, 0x03)


def handle_echo(event: Event) -> int:
    """C-ECHO: always success."""
    metrics.ECHOES.inc()
    return SUCCESS


def handle_store(event: Event, receiver: Receiver) -> int:
    """C-STORE: hand the encoded data set to ``receiver``; return its status.

    Non-CT SOP classes get 0x0122 before anything is encoded; an unexpected error answers 0xA700
    (out of resources) so that the sender keeps the instance and retries.
    """
    request = cast(C_STORE, event.request)
    sop_class = str(request.AffectedSOPClassUID or "")
    calling = event.assoc.requestor.ae_title
    try:
        check_sop_class(sop_class)  # before anything is encoded
    except Rejection as exc:
        LOGGER.warning("rejected an instance from %s: %s", calling, exc)
        metrics.rejected(exc.reason, exc.status)
        return exc.status
    try:
        return receiver.receive(
            _encoded(event),
            sop_class_uid=sop_class,
            sop_instance_uid=str(request.AffectedSOPInstanceUID or ""),
            transfer_syntax_uid=str(event.context.transfer_syntax),
            calling_aet=calling,
        )
    except Exception:
        LOGGER.exception("unexpected error while storing an instance from %s: answering 0xA700", calling)
        metrics.rejected("internal", OUT_OF_RESOURCES)
        return OUT_OF_RESOURCES


def _encoded(event: Event) -> bytes:
    """The received instance in DICOM file format, from memory or, with pynetdicom's
    ``STORE_RECV_CHUNKED_DATASET``, from the temporary file it was streamed to."""
    path = getattr(event.request, "_dataset_path", None)
    if isinstance(path, Path):
        return path.read_bytes()
    return event.encoded_dataset(include_meta=True)


def handle_requested(event: Event, allowed: AllowedAETs) -> None:
    """A-ASSOCIATE-RQ: reject a calling AE title that is not on the allow list (when one is set)."""
    calling = cast(A_ASSOCIATE, event.assoc.requestor.primitive).calling_ae_title
    if allowed.allows(calling):
        return
    LOGGER.warning("rejected an association from AE title %r: not on the allow list", calling)
    metrics.ASSOCIATIONS.labels(result="rejected_aet").inc()
    event.assoc.acse.send_reject(*REJECT_CALLING_AET)
    event.assoc.kill()  # as pynetdicom's own rejections do: waits until the A-ASSOCIATE-RJ is sent


def handle_conn_open(event: Event, nodelay: bool) -> None:
    """A new connection: turn Nagle's algorithm off, so that small status replies leave at once."""
    sock = event.assoc.dul.socket
    if nodelay and sock is not None and sock.socket is not None:
        try:
            sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            LOGGER.debug("cannot set TCP_NODELAY: %s", exc)


def handle_accepted(event: Event) -> None:
    """Count an accepted association."""
    metrics.ASSOCIATIONS.labels(result="accepted").inc()
    LOGGER.debug("association accepted from %s", event.assoc.requestor.ae_title)


def handle_rejected(event: Event) -> None:
    """Count an association that pynetdicom rejected (too many associations, bad called AE)."""
    metrics.ASSOCIATIONS.labels(result="rejected").inc()
    LOGGER.warning("rejected an association from %s (limit reached or not acceptable)", event.assoc.requestor.ae_title)


def handle_aborted(event: Event) -> None:
    """Count an aborted association."""
    metrics.ASSOCIATIONS.labels(result="aborted").inc()
    LOGGER.info("association from %s aborted", event.assoc.requestor.ae_title)

