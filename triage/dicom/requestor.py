"""Requesting an association as an SCU, and saying in words why one was not established.

pynetdicom decides between "rejected" and "aborted" after the A-ASSOCIATE-RJ has been read; a peer
that closes its socket right after rejecting (Orthanc, DCMTK) can close it before the requesting thread
looks, and the rejection is then reported as an abort (seen about once in 15 requests on a busy
machine). The A-ASSOCIATE-RJ PDU itself is caught here as it arrives, so the reason is never lost.
"""

from __future__ import annotations

import socket

from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.pdu import A_ASSOCIATE_RJ


def request_association(ae: AE, host: str, port: int, called_aet: str) -> tuple[Association, str | None]:
    """Ask ``called_aet`` at ``host:port`` for an association with ``ae``'s requested contexts.

    Returns
    -------
    tuple
        The association, and None when it is established, otherwise why it is not, e.g.
        ``"rejected: called AE title not recognised"``.
    """
    rejections: list[A_ASSOCIATE_RJ] = []

    def keep_rejection(event: Event) -> None:
        if isinstance(event.pdu, A_ASSOCIATE_RJ):
            rejections.append(event.pdu)

    assoc = ae.associate(host, port, ae_title=called_aet, evt_handlers=[(evt.EVT_PDU_RECV, keep_rejection)])
    if assoc.is_established:
        return assoc, None
    if rejections:
        return assoc, f"rejected: {_reason(rejections[0])}"
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        return assoc, f"not established ({exc.strerror or exc})"
    return assoc, "aborted during negotiation (no common presentation context, TLS, or timeout)"


def _reason(rejection: A_ASSOCIATE_RJ) -> str:
    try:
        reason = rejection.reason_str
    except ValueError:  # a reason code the standard does not define
        reason = f"reason 0x{rejection.reason_diagnostic:02X} from source {rejection.source}"
    permanence = "transient, " if rejection.result == 0x02 else ""
    return f"{permanence}{reason[0].lower()}{reason[1:]}"
