"""The DICOM channel against real PACS peers (DCMTK storescp, Orthanc): SR, key objects, heat map."""

from __future__ import annotations

import io
import re
import subprocess

import highdicom as hd
import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.sr.codedict import codes

from tests.alerts.conftest import add_case, outbox, rows, use_dicom
from tests.helpers import free_port
from triage.alerts.dispatcher import dispatch_due
from triage.alerts.report import FINDING_CODES
from triage.db.engine import transaction
from triage.db.models import KeyImage


def _read_findings(sr) -> dict[str, tuple[float, str, str | None]]:
    """Per finding code meaning: (probability, Present/Absent, referenced SOP Instance UID)."""
    found = {}
    for group in sr.content.get_image_measurement_groups():
        [measurement] = group.get_measurements()
        [evaluation] = group.get_qualitative_evaluations()
        sources = group.source_images
        found[group.finding_type.meaning] = (
            float(measurement.value),
            evaluation.value.meaning,
            sources[0].referenced_sop_instance_uid if sources else None,
        )
    return found


def _algorithm(sr) -> tuple[str, str]:
    [container] = sr.content.get_image_measurement_groups()[0]
    items = {item.ConceptNameCodeSequence[0].CodeValue: item for item in container.ContentSequence}
    name, version = items[codes.DCM.AlgorithmName.value], items[codes.DCM.AlgorithmVersion.value]
    return name.TextValue, version.TextValue


def _check_with_dciodvfy(path) -> None:
    """dicom3tools' IOD checker: no error; the only warnings allowed are about the private scheme."""
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=30)
    report = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith(("Error", "Warning"))]
    assert [line for line in report if "99TRIAGE" not in line] == [], report


def _check_with_dcmtk(path) -> None:
    for tool in (["dsrdump", "-v"], ["dsr2xml"]):
        done = subprocess.run([*tool, str(path)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert not [line for line in done.stderr.splitlines() if line.startswith("E:")], done.stderr
    xml = subprocess.run(["dsr2xml", str(path)], capture_output=True, text=True, check=True).stdout
    assert "Subdural intracranial hemorrhage" in xml and "Probability" in xml


def test_the_report_reaches_storescp_and_reads_back(factory, alert_settings, storescp):
    use_dicom(alert_settings, storescp.ae_title, storescp.port)
    case = add_case(factory, alert_settings, flagged=("any", "subdural"), slices=6)
    assert dispatch_due(factory, alert_settings) == 1, outbox(factory)
    files = {dcmread(path, stop_before_pixels=True).Modality: path for path in storescp.files()}
    assert sorted(files) == ["KO", "SR"]  # key objects are on by default, the heat map is off
    sr_path = files["SR"]
    ds = dcmread(sr_path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.22"  # Enhanced SR
    assert ds.StudyInstanceUID == case.study_uid
    assert ds.SeriesInstanceUID != case.series_uid and ds.SeriesNumber == 990
    assert ds.PatientID == "PID-0042" and ds.AccessionNumber == "ACC-1001"
    evidence = {
        item.ReferencedSOPInstanceUID
        for study in ds.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert evidence <= set(case.sop_uids) and case.sop_uids[0] in evidence
    assert {s.SeriesInstanceUID for s in ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence} == {
        case.series_uid}
    sr = hd.sr.srread(sr_path)
    findings = _read_findings(sr)
    assert set(findings) == {code.meaning for code in FINDING_CODES.values()}
    assert findings["Subdural intracranial hemorrhage"][:2] == (0.9, "Present")
    assert findings["Intracranial hemorrhage"][:2] == (0.9, "Present")
    assert findings["Epidural hemorrhage"][:2] == (0.1, "Absent")
    # each class points at the slice where its probability peaks (slice i peaks for class i)
    assert findings["Intracranial hemorrhage"][2] == case.sop_uids[0]
    assert findings["Subdural intracranial hemorrhage"][2] == case.sop_uids[5]
    assert _algorithm(sr) == ("triage ICH two-stage ResNet-50", "m1")
    _check_with_dcmtk(sr_path)
    _check_with_dciodvfy(sr_path)
    _check_with_dciodvfy(files["KO"])
    ko = dcmread(files["KO"])
    assert ko.StudyInstanceUID == case.study_uid and ko.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.59"
    [row] = rows(factory, channel="dicom")
    assert row.state == "sent" and row.kind == "report"


def test_a_resent_report_is_the_same_sop_instance(factory, alert_settings, storescp):
    use_dicom(alert_settings, storescp.ae_title, storescp.port)
    alert_settings.alerts.dicom.key_objects = False
    add_case(factory, alert_settings, flagged=(), slices=3)
    dispatch_due(factory, alert_settings)
    first = dcmread(storescp.files()[0])
    with transaction(factory) as session:
        row = session.get(type(rows(factory)[0]), rows(factory)[0].id)
        row.state, row.attempts = "pending", 0
    dispatch_due(factory, alert_settings)
    uids = {dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in storescp.files()}
    assert uids == {first.SOPInstanceUID}
    findings = _read_findings(hd.sr.srread(storescp.files()[0]))
    assert all(state == "Absent" for _, state, _ in findings.values())  # every analysed study gets its SR


def test_orthanc_stores_the_report_key_objects_and_heat_map(factory, alert_settings, orthanc, tmp_path):
    use_dicom(alert_settings, orthanc.ae_title, orthanc.dicom_port)
    alert_settings.alerts.dicom.secondary_capture = True
    case = add_case(factory, alert_settings, flagged=("any", "intraventricular"), slices=6)
    heat = np.zeros((32, 32, 3), dtype=np.uint8)
    heat[..., 0] = 200
    png = alert_settings.store / "keyimages" / "heat.png"
    png.parent.mkdir(parents=True)
    Image.fromarray(heat).save(png)
    with transaction(factory) as session:
        session.add(KeyImage(series_id=case.series_id, sop_instance_uid=case.sop_uids[0],
                             path="keyimages/heat.png", kind="heatmap"))
    before = set(orthanc.instances())
    assert dispatch_due(factory, alert_settings) == 1, outbox(factory)
    stored = [dcmread(io.BytesIO(orthanc.file(i))) for i in set(orthanc.instances()) - before]
    by_modality = {ds.Modality: ds for ds in stored}
    assert sorted(by_modality) == ["KO", "OT", "SR"]
    assert {ds.StudyInstanceUID for ds in stored} == {case.study_uid}
    sc = by_modality["OT"]
    for modality, ds in by_modality.items():
        path = tmp_path / f"{modality}.dcm"
        ds.save_as(path, enforce_file_format=True)
        _check_with_dciodvfy(path)
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert np.array_equal(sc.pixel_array, heat)
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == case.sop_uids[0]
    sr = hd.sr.EnhancedSR.from_dataset(by_modality["SR"])
    assert _read_findings(sr)["Intraventricular hemorrhage"][:2] == (0.9, "Present")


def test_a_pacs_that_is_down_is_retried(factory, alert_settings):
    use_dicom(alert_settings, "PACS", free_port())
    alert_settings.alerts.dicom.timeout_seconds = 2.0
    add_case(factory, alert_settings, flagged=("any",), slices=2)
    assert dispatch_due(factory, alert_settings) == 0, outbox(factory)
    [row] = rows(factory, channel="dicom")
    assert row.state == "pending" and "association with PACS@127.0.0.1" in row.last_error


def test_a_wrong_called_ae_title_is_rejected_and_recorded(factory, alert_settings, orthanc):
    use_dicom(alert_settings, "NOT-ORTHANC", orthanc.dicom_port)
    alert_settings.alerts.dicom.timeout_seconds = 30.0
    add_case(factory, alert_settings, flagged=("any",), slices=2)
    before = orthanc.instances()
    assert dispatch_due(factory, alert_settings) == 0, outbox(factory)
    [row] = rows(factory, channel="dicom")
    assert re.search(r"association with NOT-ORTHANC@127\.0\.0\.1:\d+ rejected: called AE title not recognised",
                     row.last_error), row.last_error
    assert orthanc.instances() == before


def test_missing_source_files_are_a_clear_failure(factory, alert_settings, storescp):
    use_dicom(alert_settings, storescp.ae_title, storescp.port)
    case = add_case(factory, alert_settings, flagged=("any",), slices=2)
    for path in (alert_settings.store / case.study_uid).rglob("*.dcm"):
        path.unlink()
    assert dispatch_due(factory, alert_settings) == 0, outbox(factory)
    assert "no stored source instance" in rows(factory, channel="dicom")[0].last_error
    assert storescp.files() == []
