"""The receiver against DCMTK echoscu/storescu: echo, store, state rules, allow list, association limit."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pydicom
import pytest
from prometheus_client import REGISTRY
from pydicom.data import get_testdata_file
from pynetdicom import AE
from sqlalchemy import select

from tests.dicom.conftest import echoscu, store_files, storescu
from tests.dicom.ctgen import ct_series, write_series
from tests.helpers import wait_for
from triage.db.admin import ALLOWED_AETS, set_admin_setting
from triage.db.models import Study
from triage.dicom.server import DicomServer
from triage.errors import ConfigError
from triage.synth import make_study


def test_echoscu_succeeds(scp: DicomServer) -> None:
    result = echoscu(scp.port)
    assert result.returncode == 0, result.stderr
    assert "Received Echo Response (Success)" in result.stderr


def test_storescu_phantom_series_is_on_disk_and_in_the_database(scp: DicomServer, tmp_path: Path, rows,
                                                                  scp_settings) -> None:
    phantom = make_study(1, slices=12, rows=64)
    datasets = phantom.datasets
    result = storescu(scp.port, *write_series(tmp_path / "in", datasets))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Received Store Response (Success)") == 12
    instances, series = rows()
    assert sorted(i.sop_instance_uid for i in instances) == sorted(ds.SOPInstanceUID for ds in datasets)
    files = store_files(scp_settings.store)
    assert sorted(str(p.relative_to(scp_settings.store)) for p in files) == sorted(i.path for i in instances)
    for instance in instances:
        stored = pydicom.dcmread(scp_settings.store / instance.path)
        assert stored.SOPInstanceUID == instance.sop_instance_uid
        assert stored.pixel_array.shape == (64, 64)
        assert instance.size_bytes == (scp_settings.store / instance.path).stat().st_size
    assert sorted(i.z_position for i in instances) == pytest.approx(sorted(phantom.z), abs=1e-3)
    assert sorted(i.instance_number for i in instances) == list(range(1, 13))
    (one,) = series
    first = datasets[0]
    assert (one.state, one.num_instances, one.expected_instances) == ("receiving", 12, None)
    assert (one.body_part, one.series_description, one.series_number) == (
        "HEAD", first.SeriesDescription, first.SeriesNumber)
    assert (one.slice_thickness, one.image_type, one.modality) == (5.0, "ORIGINAL\\PRIMARY\\AXIAL", "CT")
    assert one.first_received_at <= one.last_received_at
    with scp.factory() as session:
        study = session.scalars(select(Study)).one()
    assert (study.patient_id, study.patient_name, study.accession_number) == (
        first.PatientID, str(first.PatientName), first.AccessionNumber)
    assert (study.study_date, study.study_description, study.calling_aet) == (
        first.StudyDate, first.StudyDescription, "STORESCU")


def test_a_complete_series_is_queued_at_once(scp: DicomServer, tmp_path: Path, rows) -> None:
    paths = write_series(tmp_path / "in", ct_series(10, seed=2, images_in_acquisition=True))
    result = storescu(scp.port, *paths)
    assert result.returncode == 0, result.stderr
    (series,) = rows()[1]
    assert series.state == "queued" and series.ready_at is not None
    assert series.expected_instances == 10


def test_a_complete_series_that_fails_the_gate_is_stored_as_not_analysed(scp: DicomServer, tmp_path: Path,
                                                                          rows) -> None:
    datasets = ct_series(10, seed=3, images_in_acquisition=True, body_part="CHEST", description="CT CHEST")
    result = storescu(scp.port, *write_series(tmp_path / "in", datasets))
    assert result.returncode == 0, result.stderr
    instances, (series,) = rows()
    assert len(instances) == 10
    assert series.state == "not_analysed"
    assert "body part 'CHEST'" in series.state_reason


def test_a_resent_series_is_stored_once(scp: DicomServer, tmp_path: Path, rows, scp_settings) -> None:
    paths = write_series(tmp_path / "in", ct_series(5, seed=4))
    for _ in range(2):
        result = storescu(scp.port, *paths)
        assert result.returncode == 0, result.stderr
        assert result.stderr.count("Received Store Response (Success)") == 5
    instances, (series,) = rows()
    assert len(instances) == 5 and series.num_instances == 5
    assert len(store_files(scp_settings.store)) == 5


def test_the_allow_list_rejects_other_calling_aes(scp_settings, factory, tmp_path: Path) -> None:
    scp_settings.dicom.allowed_aets = ["CT1"]
    server = DicomServer(scp_settings, factory)
    server.start()
    try:
        refused = echoscu(server.port, aet="OTHER")
        assert refused.returncode != 0
        assert "Calling AE Title Not Recognized" in refused.stderr
        assert echoscu(server.port, aet="CT1").returncode == 0
        # the admin page changes the list: applied without a restart
        with factory() as session, session.begin():
            set_admin_setting(session, ALLOWED_AETS, ["OTHER"], actor="admin")
        server.allowed.cache_seconds = 0
        assert echoscu(server.port, aet="OTHER").returncode == 0
        assert echoscu(server.port, aet="CT1").returncode != 0
        with factory() as session, session.begin():
            set_admin_setting(session, ALLOWED_AETS, [], actor="admin")
        assert echoscu(server.port, aet="ANYONE").returncode == 0
    finally:
        server.stop()


def test_associations_beyond_the_limit_are_rejected(scp_settings, factory) -> None:
    scp_settings.dicom.max_associations = 1
    server = DicomServer(scp_settings, factory)
    server.start()
    ae = AE(ae_title="HOLDER")
    ae.add_requested_context("1.2.840.10008.1.1")
    try:
        held = ae.associate("127.0.0.1", server.port, ae_title="TRIAGE")
        assert held.is_established
        wait_for(lambda: server.active_associations == 1)
        refused = echoscu(server.port)
        assert refused.returncode != 0
        assert "Local Limit Exceeded" in refused.stderr
        held.release()
        wait_for(lambda: server.active_associations == 0)
        assert echoscu(server.port).returncode == 0
    finally:
        ae.shutdown()
        server.stop()


def test_stop_lets_a_running_association_finish(scp_settings, factory, tmp_path: Path) -> None:
    server = DicomServer(scp_settings, factory)
    server.start()
    ae = AE(ae_title="SLOW")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1")
    datasets = ct_series(3, seed=5)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="TRIAGE")
    try:
        assert assoc.is_established
        wait_for(lambda: server.active_associations == 1)
        started = time.monotonic()
        stopper = threading.Thread(target=server.stop, kwargs={"grace_seconds": 10})
        stopper.start()
        time.sleep(0.3)
        statuses = [assoc.send_c_store(ds).Status for ds in datasets]
        assoc.release()
        stopper.join(timeout=15)
        assert not stopper.is_alive() and time.monotonic() - started < 10
        assert statuses == [0, 0, 0]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    finally:
        ae.shutdown()


def test_counters_for_metrics(scp: DicomServer, tmp_path: Path) -> None:
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = (value("triage_dicom_instances_stored_total"), value("triage_dicom_duplicates_total"),
              value("triage_dicom_rejections_total", reason="sop_class", status="0x0122"),
              value("triage_dicom_associations_total", result="accepted"), value("triage_dicom_echoes_total"))
    paths = write_series(tmp_path / "in", ct_series(2, seed=30))
    storescu(scp.port, *paths, get_testdata_file("MR_small.dcm"), extra=("--no-halt",))
    storescu(scp.port, paths[0])
    echoscu(scp.port)
    after = (value("triage_dicom_instances_stored_total"), value("triage_dicom_duplicates_total"),
             value("triage_dicom_rejections_total", reason="sop_class", status="0x0122"),
             value("triage_dicom_associations_total", result="accepted"), value("triage_dicom_echoes_total"))
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1, 1, 3, 1]


def test_a_port_in_use_is_a_configuration_error(scp: DicomServer, scp_settings, factory) -> None:
    scp_settings.dicom.port = scp.port
    with pytest.raises(ConfigError, match=f"dicom.port={scp.port}.*cannot listen"):
        DicomServer(scp_settings, factory).start()
