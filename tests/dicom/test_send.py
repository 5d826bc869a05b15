"""`triage send` as a user runs it, against the running receiver."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from tests.dicom.ctgen import ct_series, write_series
from tests.helpers import free_port, run_triage
from triage.dicom.remap import mapped_uid, remap_uids, valid_uid
from triage.dicom.scu import send_paths
from triage.dicom.server import DicomServer

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI", "ignore:The value length")


def send(port: int, *args: str) -> tuple[int, str, str]:
    proc = run_triage("send", *args, "--port", str(port), "--aec", "TRIAGE", "--aet", "SENDER")
    return proc.returncode, proc.stdout, proc.stderr


def research_files(directory: Path, count: int) -> list[Path]:
    """Files like RSNA's: ``ID_xxx`` UIDs and no SOP Class UID in the data set."""
    datasets = ct_series(count, seed=9)
    for n, ds in enumerate(datasets):
        ds.SOPInstanceUID = f"ID_{n:08x}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID = "ID_study01"
        ds.SeriesInstanceUID = "ID_series01"
        del ds.SOPClassUID
    return write_series(directory, datasets)


def test_send_stores_every_dicom_file_under_the_paths(scp: DicomServer, tmp_path: Path, rows) -> None:
    write_series(tmp_path / "in" / "a", ct_series(6, seed=1))
    extra = write_series(tmp_path / "other", ct_series(2, seed=2))
    (tmp_path / "in" / "labels.csv").write_text("not,dicom\n")
    code, out, err = send(scp.port, str(tmp_path / "in"), str(extra[0]), str(extra[1]), "--associations", "3")
    assert code == 0, out + err
    assert "sent 8 of 8 DICOM files to TRIAGE@127.0.0.1" in out
    assert "0 failed" in out and "1 non-DICOM files skipped" in out
    assert "file" in err  # the progress bar
    assert len(rows()[0]) == 8


def test_send_reports_each_failure_and_exits_non_zero(scp: DicomServer, tmp_path: Path, rows) -> None:
    write_series(tmp_path / "in", ct_series(3, seed=3))
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "in" / "mr.dcm")
    code, out, _ = send(scp.port, str(tmp_path / "in"), "--no-progress")
    assert code == 1
    assert "sent 3 of 4" in out
    assert f"FAILED {tmp_path / 'in' / 'mr.dcm'}: 0x0122" in out
    assert len(rows()[0]) == 3


def test_send_names_a_missing_path(tmp_path: Path) -> None:
    code, _, err = send(free_port(), str(tmp_path / "nowhere"))
    assert code == 2
    assert "nowhere" in err and "does not exist" in err


def test_send_reports_a_receiver_that_is_not_there(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "in", ct_series(2))
    port = free_port()
    report = send_paths(paths, host="127.0.0.1", port=port, called_aet="TRIAGE", calling_aet="X", progress=False)
    assert not report.ok
    expected = f"not sent: association with TRIAGE@127.0.0.1:{port} not established (Connection refused)"
    assert [f.reason for f in report.failures] == [expected] * 2
    assert "FAILED" in report.summary() and str(port) in report.summary()


def test_send_reports_a_rejected_calling_ae(scp_settings, factory, tmp_path: Path) -> None:
    scp_settings.dicom.allowed_aets = ["CT1"]
    server = DicomServer(scp_settings, factory)
    server.start()
    try:
        report = send_paths(write_series(tmp_path / "in", ct_series(2)), host="127.0.0.1", port=server.port,
                            called_aet="TRIAGE", calling_aet="OTHER", progress=False)
    finally:
        server.stop()
    assert not report.ok and report.stored == 0
    expected = f"not sent: association with TRIAGE@127.0.0.1:{server.port} rejected: calling AE title not recognised"
    assert [f.reason for f in report.failures] == [expected] * 2


def test_research_files_need_remap_uids(scp: DicomServer, tmp_path: Path, rows) -> None:
    paths = research_files(tmp_path / "in", 4)
    kwargs = {"host": "127.0.0.1", "port": scp.port, "called_aet": "TRIAGE", "calling_aet": "RSNA", "progress": False}
    report = send_paths(paths, **kwargs)
    assert not report.ok and report.stored == 0 and len(report.failures) == 4
    for _ in range(2):  # deterministic: the second run finds every instance stored already
        report = send_paths(paths, remap_uids=True, associations=2, **kwargs)
        assert report.ok and report.stored == 4, report.summary()
    instances, series = rows()
    assert len(instances) == 4 and len(series) == 1
    assert series[0].series_uid == mapped_uid("ID_series01")
    assert sorted(i.sop_instance_uid for i in instances) == sorted(mapped_uid(f"ID_{n:08x}") for n in range(4))


@pytest.mark.parametrize("value", ["ID_12ab", "1.2.3.", "1" * 65])
def test_remapped_uids_are_valid_and_stable(value: str) -> None:
    assert not valid_uid(value)
    new = mapped_uid(value)
    assert valid_uid(new) and new.startswith("2.25.") and new == mapped_uid(value)
    assert mapped_uid(value + "x") != new


def test_remap_keeps_valid_uids_and_fills_the_sop_class(tmp_path: Path) -> None:
    ds = ct_series(1)[0]
    study = ds.StudyInstanceUID
    ds.SOPInstanceUID = "ID_1"
    del ds.SOPClassUID
    assert remap_uids(ds) == 1
    assert ds.StudyInstanceUID == study
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == mapped_uid("ID_1")


def test_a_named_file_that_is_not_dicom_is_a_failure(scp: DicomServer, tmp_path: Path) -> None:
    paths = write_series(tmp_path / "in", ct_series(2, seed=31))
    text = tmp_path / "notes.txt"
    text.write_text("not dicom")
    report = send_paths([*paths, text], host="127.0.0.1", port=scp.port, called_aet="TRIAGE", calling_aet="X",
                        progress=False)
    assert not report.ok and report.stored == 2 and report.total == 3
    assert [str(f) for f in report.failures] == [f"{text}: not a DICOM file (no DICM preamble)"]
    assert "sent 2 of 3" in report.summary()
