"""`triage init` and `triage serve` as a user runs them: start, stop on SIGTERM with exit 0."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.helpers import run_triage, start_triage, triage_env, wait_for
from triage.db import migrate


def _serve_until_running(tmp_path: Path, database_url: str, model: Path, *args: str) -> tuple[int, str]:
    env = triage_env(TRIAGE_DATABASE_URL=database_url, TRIAGE_DATA_DIR=str(tmp_path / "data"),
                     TRIAGE_WEB__SECRET_KEY="daemon-test-secret-key-0123456789", TRIAGE_MODEL=str(model))
    log = tmp_path / "serve.log"
    proc = start_triage("serve", "--dicom-port", "0", "--web-port", "0", *args, env=env, cwd=tmp_path, log=log)
    try:
        wait_for(lambda: "triage running" in log.read_text() or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, log.read_text()
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        assert time.monotonic() - started < 10, "stopping took too long"
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, log.read_text()


@pytest.mark.parametrize("roles", ["scp,worker,web", "web", "scp", "worker"])
def test_serve_starts_and_stops_on_sigterm(tmp_path: Path, database_url: str, model_dir: Path, roles: str) -> None:
    code, log = _serve_until_running(tmp_path, database_url, model_dir, "--roles", roles)
    assert code == 0, log
    assert "received SIGTERM" in log and log.rstrip().endswith("stopped")
    assert "Traceback" not in log


def test_init_then_serve_from_scratch(tmp_path: Path, empty_database_url: str, model_dir: Path) -> None:
    env = triage_env(TRIAGE_DATABASE_URL=empty_database_url)
    proc = run_triage("init", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "triage.toml").exists()
    assert run_triage("db", "current", env=env, cwd=tmp_path).stdout.strip() != "(empty database)"
    code, log = _serve_until_running(tmp_path, empty_database_url, model_dir)
    assert code == 0, log


def test_init_writes_the_example_config_where_triage_config_points(tmp_path: Path, empty_database_url: str) -> None:
    config = tmp_path / "etc" / "triage" / "triage.toml"
    env = triage_env(TRIAGE_DATABASE_URL=empty_database_url, TRIAGE_CONFIG=str(config))
    proc = run_triage("init", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert config.exists() and not (tmp_path / "triage.toml").exists()


def test_init_with_an_unwritable_config_path_exits_2(tmp_path: Path, empty_database_url: str) -> None:
    (tmp_path / "a-file").write_text("")
    proc = run_triage("init", "--config", str(tmp_path / "a-file" / "triage.toml"),
                      env=triage_env(TRIAGE_DATABASE_URL=empty_database_url), cwd=tmp_path)
    assert proc.returncode == 2
    assert "invalid setting config=" in proc.stderr and "Traceback" not in proc.stderr
    assert migrate.current(empty_database_url) is None  # nothing changed


def test_serve_refuses_an_unmigrated_database(tmp_path: Path, empty_database_url: str) -> None:
    proc = run_triage("serve", env=triage_env(TRIAGE_DATABASE_URL=empty_database_url), cwd=tmp_path)
    assert proc.returncode == 2
    assert "triage init" in proc.stderr


def test_db_commands(tmp_path: Path, empty_database_url: str) -> None:
    env = triage_env(TRIAGE_DATABASE_URL=empty_database_url)
    assert run_triage("db", "current", env=env, cwd=tmp_path).stdout.strip() == "(empty database)"
    assert run_triage("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    assert run_triage("db", "current", env=env, cwd=tmp_path).stdout.strip() == migrate.head()
    assert run_triage("db", "downgrade", "base", env=env, cwd=tmp_path).returncode == 0
    assert run_triage("db", "current", env=env, cwd=tmp_path).stdout.strip() == "(empty database)"


def test_help_lists_every_contract_command() -> None:
    out = run_triage("--help").stdout
    for command in ("init", "db", "serve", "scp", "worker", "web", "synth", "send", "train", "evaluate",
                    "demo", "user"):
        assert f"    {command} " in out or f"    {command}\n" in out, command
    for sub in ("serve", "demo", "scp", "worker", "web"):
        out = run_triage(sub, "--help").stdout
        for flag in ("--config", "--database-url", "--storage-dir", "--ae-title", "--dicom-port", "--web-host",
                     "--web-port", "--model"):
            assert flag in out, (sub, flag)
