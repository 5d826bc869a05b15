"""Association requests as an SCU: a rejection is reported as a rejection, with its reason."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.alerts.receivers import Orthanc
from tests.helpers import free_port
from triage.dicom.requestor import request_association


def _ask(port: int, called_aet: str) -> tuple[bool, str | None]:
    ae = AE(ae_title="TRIAGE")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.connection_timeout = 10
    assoc, failure = request_association(ae, "127.0.0.1", port, called_aet)
    established = assoc.is_established
    if established:
        assoc.release()
    return established, failure


def test_orthanc_rejecting_a_wrong_called_ae_title_on_a_busy_machine_is_a_rejection(tmp_path: Path) -> None:
    """Orthanc closes its socket right after the A-ASSOCIATE-RJ; with every core busy, pynetdicom alone
    reports some of these rejections as aborts (about one in 15 here). Each one must read as rejected."""
    orthanc = Orthanc(tmp_path / "orthanc")
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * (os.cpu_count() or 1))]
    try:
        outcomes = Counter(_ask(orthanc.dicom_port, "NOT-ORTHANC") for _ in range(100))
        assert _ask(orthanc.dicom_port, orthanc.ae_title) == (True, None)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
        orthanc.stop()
    assert outcomes == {(False, "rejected: called AE title not recognised"): 100}


def test_nobody_listening_is_not_established_with_the_system_error() -> None:
    assert _ask(free_port(), "ANY") == (False, "not established (Connection refused)")
