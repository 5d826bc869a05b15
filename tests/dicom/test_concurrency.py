"""Many simultaneous associations (DCMTK storescu processes): everything stored once, no lock errors."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from sqlalchemy import func, select

from tests.dicom.conftest import DCMTK_ENV, store_files
from tests.dicom.ctgen import ct_series, write_series
from triage.db.models import Instance
from triage.dicom.server import DicomServer


def storescu_processes(port: int, directories: list[Path]) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(["storescu", "-v", "-aet", f"CT{n}", "-aec", "TRIAGE", "+sd", "127.0.0.1", str(port),
                          str(directory)], env=DCMTK_ENV, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        for n, directory in enumerate(directories)
    ]


def finish(processes: list[subprocess.Popen[str]]) -> list[str]:
    outputs = []
    for proc in processes:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        outputs.append(err)
    return outputs


def test_eight_associations_of_fifty_slices(scp: DicomServer, tmp_path: Path, rows, scp_settings, caplog) -> None:
    caplog.set_level(logging.WARNING)
    directories = []
    for s in range(4):  # four series of 100 slices, each sent half by one association, half by another
        datasets = ct_series(100, seed=100 + s, rows=64)
        for half in range(2):
            directories.append(tmp_path / f"series{s}-{half}")
            write_series(directories[-1], datasets[half::2])
    outputs = finish(storescu_processes(scp.port, directories))
    assert [out.count("Received Store Response (Success)") for out in outputs] == [50] * 8
    instances, series = rows()
    assert len(instances) == 400 and len({i.sop_instance_uid for i in instances}) == 400
    assert [s.num_instances for s in series] == [100] * 4
    assert len(store_files(scp_settings.store)) == 400
    assert not [r for r in caplog.records if "locked" in r.getMessage() or r.levelno >= logging.ERROR]


def test_the_same_slices_from_three_associations_at_once_are_stored_once(scp: DicomServer, tmp_path: Path, rows,
                                                                          scp_settings) -> None:
    directory = tmp_path / "same"
    write_series(directory, ct_series(50, seed=200, rows=64))
    outputs = finish(storescu_processes(scp.port, [directory] * 3))
    assert [out.count("Received Store Response (Success)") for out in outputs] == [50] * 3
    instances, (series,) = rows()
    assert len(instances) == 50 and series.num_instances == 50
    with scp.factory() as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == 50
    assert len(store_files(scp_settings.store)) == 50
