"""`triage demo` as a user runs it: phantoms sent over DICOM to itself, classified, then it stops."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import func, select

from tests.helpers import free_port, run_triage, triage_env
from triage.db.engine import create_db_engine, session_factory
from triage.db.models import Series, User
from triage.db.thresholds import load_thresholds
from triage.domain import CLASSES
from triage.model import update_metadata


def test_demo_sends_classifies_and_stops_with_the_models_thresholds(tmp_path: Path, model_dir: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    calibrated = {name: round(0.31 + 0.1 * k, 2) for k, name in enumerate(CLASSES)}
    update_metadata(model, thresholds=calibrated)
    data = tmp_path / "demo"
    proc = run_triage(
        "demo", "--exit-when-done", "--studies", "2", "--model", str(model), "--data-dir", str(data),
        "--dicom-port", str(free_port()), "--web-port", str(free_port()),
        env=triage_env(TRIAGE_THRESHOLDS__SUBDURAL="0.9"), cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    password = (data / "demo-password.txt").read_text().strip()
    assert f"user 'demo', password '{password}'" in proc.stdout
    assert password not in proc.stderr  # the secret is shown to the user, never logged
    engine = create_db_engine(f"sqlite:///{data / 'triage.db'}")
    try:
        with session_factory(engine)() as s:
            assert s.scalar(select(func.count()).select_from(Series)) == 2
            assert set(s.scalars(select(Series.state))) == {"classified"}
            assert s.scalars(select(User.role).where(User.username == "demo")).one() == "admin"
            thresholds, _ = load_thresholds(s)
    finally:
        engine.dispose()
    assert thresholds == calibrated | {"subdural": 0.9}  # the model's calibration, unless the user set one


def test_demo_refuses_a_named_model_that_does_not_exist(tmp_path: Path) -> None:
    proc = run_triage("demo", "--exit-when-done", "--model", str(tmp_path / "typo"),
                      "--data-dir", str(tmp_path / "demo"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "invalid setting model=" in proc.stderr and "no model.json" in proc.stderr
    assert not (tmp_path / "typo").exists()
