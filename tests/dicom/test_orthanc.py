"""Orthanc, configured with triage as a modality, pushes a study through its REST API as a PACS would."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import select

from tests.dicom.ctgen import write_series
from tests.helpers import free_port, wait_for
from triage.db.models import Study
from triage.dicom.server import DicomServer
from triage.synth import make_study


class Orthanc:
    """A real Orthanc server (``Orthanc cfg.json``) on free ports, storing under ``directory``."""

    def __init__(self, directory: Path, triage_port: int) -> None:
        self.http_port, self.dicom_port = free_port(), free_port()
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "triage-test", "DicomAet": "ORTHANC",
            "HttpPort": self.http_port, "DicomPort": self.dicom_port,
            "StorageDirectory": str(directory / "storage"), "IndexDirectory": str(directory / "storage"),
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomModalities": {"triage": ["TRIAGE", "127.0.0.1", triage_port]},
            "DicomScuTimeout": 30, "Plugins": [],
        }
        self.config = directory / "cfg.json"
        self.config.write_text(json.dumps(config))
        self.log = directory / "orthanc.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(["Orthanc", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._up, timeout=60)

    def _up(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log.read_text()
        try:
            return httpx.get(f"{self.url}/system", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def upload(self, path: Path) -> dict:
        response = httpx.post(f"{self.url}/instances", content=path.read_bytes(), timeout=30)
        response.raise_for_status()
        return response.json()

    def push(self, resources: list[str]) -> httpx.Response:
        return httpx.post(f"{self.url}/modalities/triage/store",
                          json={"Resources": resources, "Synchronous": True}, timeout=120)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def orthanc(tmp_path: Path, scp: DicomServer) -> Iterator[Orthanc]:
    server = Orthanc(tmp_path / "orthanc", scp.port)
    server.start()
    yield server
    server.stop()


def test_orthanc_pushes_a_study_to_triage(orthanc: Orthanc, scp: DicomServer, tmp_path: Path, rows) -> None:
    datasets = make_study(11, slices=20, rows=128).datasets
    uploaded = [orthanc.upload(path) for path in write_series(tmp_path / "in", datasets)]
    study = uploaded[0]["ParentStudy"]
    response = orthanc.push([study])
    assert response.status_code == 200, response.text
    instances, (series,) = rows()
    assert sorted(i.sop_instance_uid for i in instances) == sorted(ds.SOPInstanceUID for ds in datasets)
    assert series.state == "receiving" and series.num_instances == 20
    with scp.factory() as session:
        assert session.scalar(select(Study.calling_aet)) == "ORTHANC"


def test_orthanc_pushes_compressed_ct_and_reports_refused_instances(orthanc: Orthanc, rows) -> None:
    ct = orthanc.upload(Path(get_testdata_file("693_J2KR.dcm")))
    response = orthanc.push([ct["ID"]])
    assert response.status_code == 200, response.text
    (instance,), _ = rows()
    assert instance.transfer_syntax_uid == "1.2.840.10008.1.2.4.90"
    mr = orthanc.upload(Path(get_testdata_file("MR_small.dcm")))
    response = orthanc.push([mr["ID"]])
    assert response.status_code >= 400  # Orthanc reports the failed C-STORE (0x0122) to its client
    assert len(rows()[0]) == 1

