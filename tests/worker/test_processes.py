"""The worker as a user runs it: `triage serve` fed by DCMTK's storescu, kill -9, two worker processes."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.helpers import free_port, start_triage, triage_env, wait_for, wait_for_port
from tests.worker.conftest import store_datasets
from triage.db import ingest
from triage.db.engine import transaction
from triage.db.models import Alert, Instance, Series, SeriesResult, SlicePrediction, utcnow
from triage.synth.study import make_study


def _env(settings, model_dir: Path, **extra: str) -> dict[str, str]:
    return triage_env(
        TRIAGE_DATABASE_URL=settings.database_url,
        TRIAGE_DATA_DIR=str(settings.data_dir),
        TRIAGE_MODEL=str(model_dir),
        TRIAGE_WORKER__DEVICE="cpu",
        TRIAGE_WORKER__BATCH_SIZE="8",
        TRIAGE_WORKER__THREADS="1",
        TRIAGE_WORKER__HEATMAPS="false",
        TRIAGE_WEB__SECRET_KEY="test-secret-key-for-the-worker-tests",
        **extra,
    )


def _states(factory) -> Counter[str]:
    with factory() as s:
        return Counter(s.scalars(select(Series.state)))


def _queue_studies(settings, factory, n: int, slices: int = 8) -> None:
    for seed in range(n):
        store_datasets(settings, factory, make_study(100 + seed, slices=slices).datasets)
    with transaction(factory) as s:
        ingest.mark_ready(s, settings.series, utcnow() + dt.timedelta(seconds=settings.series.quiet_seconds + 1))
    assert _states(factory) == Counter({"queued": n})


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def test_storescu_to_serve_end_to_end(settings, factory, model_dir: Path, tmp_path: Path) -> None:
    study = make_study(21, slices=16, subtypes=("epidural",))
    folder = tmp_path / "scan"
    folder.mkdir()
    for i, ds in enumerate(study.datasets):
        ds.save_as(folder / f"{i:03d}.dcm", enforce_file_format=True)
    dicom_port, web_port = free_port(), free_port()
    env = _env(
        settings, model_dir,
        TRIAGE_SERIES__QUIET_SECONDS="2",
        TRIAGE_THRESHOLDS__ANY="0",  # an untrained model: flag everything
        TRIAGE_ALERTS__WEBHOOK__URL=f"http://127.0.0.1:{free_port()}/hook",
    )
    log = tmp_path / "serve.log"
    proc = start_triage("serve", "--dicom-port", str(dicom_port), "--web-port", str(web_port), env=env, log=log)
    try:
        wait_for_port(dicom_port, timeout=90)
        sent = subprocess.run(
            ["storescu", "-aec", "TRIAGE", "-aet", "CTSCANNER", "+sd", "127.0.0.1", str(dicom_port), str(folder)],
            env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, text=True, timeout=60,
        )
        assert sent.returncode == 0, sent.stderr
        wait_for(lambda: _states(factory) == Counter({"classified": 1}), timeout=120)
        with factory() as s:
            result = s.scalars(select(SeriesResult)).one()
            assert result.num_slices == 16 and result.flagged and not result.provisional
            assert s.scalar(select(func.count()).select_from(SlicePrediction)) == 16
            assert s.scalars(select(Alert.channel)).all() == ["webhook"]
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_kill_9_while_holding_a_lease(settings, factory, model_dir: Path, tmp_path: Path) -> None:
    _queue_studies(settings, factory, 4)
    env = _env(settings, model_dir, TRIAGE_WORKER__LEASE_SECONDS="3", TRIAGE_WORKER__STREAMING="false")
    first = start_triage("worker", env=env, log=tmp_path / "first.log")
    try:
        wait_for(lambda: _states(factory)["processing"] == 1, timeout=120, interval=0.01)
    finally:
        first.kill()  # SIGKILL: no clean-up at all
        first.wait()
    held = _states(factory)
    assert held["processing"] == 1, held
    second = start_triage("worker", env=env, log=tmp_path / "second.log")
    try:
        wait_for(lambda: _states(factory) == Counter({"classified": 4}), timeout=180)
    finally:
        assert _stop(second) == 0
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(SeriesResult)) == 4
        assert s.scalar(select(func.count()).select_from(SlicePrediction)) == s.scalar(
            select(func.count()).select_from(Instance)
        )
        attempts = s.scalars(select(Series.attempts)).all()
    assert sorted(attempts) in ([1, 1, 1, 2], [1, 1, 2, 2], [1, 1, 1, 1]), attempts
    assert "expired" in (tmp_path / "second.log").read_text()


def test_two_workers_share_the_queue_each_series_once(settings, factory, model_dir: Path, tmp_path: Path,
                                                      is_postgres: bool) -> None:
    n = 20 if is_postgres else 10
    _queue_studies(settings, factory, n)
    env = _env(settings, model_dir, TRIAGE_WORKER__STREAMING="false")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [start_triage("worker", env=env, log=log) for log in logs]
    try:
        wait_for(lambda: _states(factory) == Counter({"classified": n}), timeout=300)
    finally:
        codes = [_stop(p) for p in procs]
    assert codes == [0, 0], [log.read_text()[-4000:] for log in logs]
    done = [int(m) for log in logs for m in re.findall(r"series (\d+) classified", log.read_text())]
    assert sorted(done) == sorted(set(done)) and len(done) == n
    per_worker = [len(re.findall(r"series \d+ classified", log.read_text())) for log in logs]
    assert all(count > 0 for count in per_worker), per_worker
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(SeriesResult)) == n
        assert set(s.scalars(select(Series.attempts))) == {1}


@pytest.mark.parametrize("role", ["worker", "serve"])
def test_worker_without_model_refuses_to_start(settings, tmp_path: Path, role: str) -> None:
    env = triage_env(TRIAGE_DATABASE_URL=settings.database_url, TRIAGE_DATA_DIR=str(settings.data_dir),
                     TRIAGE_WEB__SECRET_KEY="x" * 32)
    proc = subprocess.run([*start_cmd(), role, "--dicom-port", "0", "--web-port", "0"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "the worker needs a model directory" in proc.stderr


def start_cmd() -> list[str]:
    import sys

    return [sys.executable, "-m", "triage"]
