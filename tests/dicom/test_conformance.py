"""docs/conformance.md is kept true: its tables are compared with the running application entity."""

from __future__ import annotations

import re

from pynetdicom import StoragePresentationContexts

from tests.helpers import REPO
from triage.config import DicomSettings, SeriesSettings
from triage.dicom import header
from triage.dicom.allowlist import CACHE_SECONDS
from triage.dicom.contexts import ANALYSED_SOP_CLASSES, VERIFICATION
from triage.dicom.handlers import REJECT_CALLING_AET
from triage.dicom.server import DicomServer

DOC = (REPO / "docs" / "conformance.md").read_text(encoding="utf-8")


def table(heading_cell: str) -> list[list[str]]:
    """The rows of the markdown table whose header row starts with ``heading_cell``."""
    lines = DOC.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith(f"| {heading_cell} |".replace("|  |", "| |")))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    return rows


def test_the_sop_class_table_is_what_the_running_ae_accepts(scp: DicomServer) -> None:
    assert scp.ae is not None
    running = {str(cx.abstract_syntax): cx for cx in scp.ae.supported_contexts}
    documented = {uid: role for _, uid, role in table("SOP class")}
    assert documented == {VERIFICATION: "SCP", **{uid: "SCP" for uid in ANALYSED_SOP_CLASSES}}
    assert set(documented) <= set(running)
    others = len(running) - len(documented)
    assert others == len(StoragePresentationContexts) - len(ANALYSED_SOP_CLASSES)
    assert f"(**{others}** further SOP classes" in DOC
    assert all(cx.scp_role in (None, True) for cx in running.values())


def test_the_transfer_syntax_table_is_what_every_storage_context_accepts(scp: DicomServer) -> None:
    assert scp.ae is not None
    documented = [uid for _, uid in table("Transfer syntax")]
    for cx in scp.ae.supported_contexts:
        if str(cx.abstract_syntax) == VERIFICATION:
            assert set(cx.transfer_syntax) == {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2"}
        else:
            assert [str(ts) for ts in cx.transfer_syntax] == documented


def test_the_overview_is_the_running_ae(scp: DicomServer) -> None:
    assert scp.ae is not None
    overview = dict((row[0], row[1]) for row in table(""))
    assert overview["Implementation Class UID"].startswith(scp.ae.implementation_class_uid)
    assert overview["Implementation Version Name"] == scp.ae.implementation_version_name
    defaults = DicomSettings()
    assert overview["AE title"].startswith(f"{defaults.ae_title}`")
    assert overview["TCP port"].startswith(f"{defaults.port}`")


def test_the_statuses_and_checks_are_the_code() -> None:
    documented = {int(code, 16) for code, *_ in table("Status")}
    assert documented == {header.SUCCESS, header.OUT_OF_RESOURCES, header.DATASET_MISMATCH,
                          header.CANNOT_UNDERSTAND, header.SOP_CLASS_NOT_SUPPORTED}
    assert f"Rows and Columns are between {header.MIN_MATRIX} and {header.MAX_MATRIX}" in DOC
    assert header.UID_PATTERN.pattern in DOC.replace("\\\\", "\\")
    assert f"at most {header.MAX_UID_LENGTH}" in DOC


def test_the_association_policy_is_the_settings() -> None:
    d = DicomSettings()
    assert f"`[dicom] max_associations` (default {d.max_associations})" in DOC
    assert f"default **{d.max_pdu_size} (unlimited)**" in DOC
    assert re.search(rf"ACSE `\[dicom\] acse_timeout` \(default {d.acse_timeout:.0f} s\)", DOC)
    assert f"DIMSE `[dicom] dimse_timeout` ({d.dimse_timeout:.0f} s)" in DOC
    assert f"`[dicom] network_timeout` ({d.network_timeout:.0f} s)" in DOC
    assert f"at most every {CACHE_SECONDS:.0f} seconds" in DOC
    result, source, reason = REJECT_CALLING_AET
    assert f"(result {result}, source {source}, reason {reason})" in DOC
    assert f"`[series] quiet_seconds` (default {SeriesSettings().quiet_seconds:.0f} s)" in DOC
