"""Settings: precedence (defaults < file < environment < flags) and every invalid-value error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import run_triage, triage_env
from triage.config import EXAMPLE_CONFIG, load_settings, prepare_directories
from triage.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("TRIAGE_"):
            monkeypatch.delenv(key)


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "triage.toml"
    path.write_text(text)
    return path


def test_defaults_follow_the_contract() -> None:
    s = load_settings()
    assert s.dicom.ae_title == "TRIAGE"
    assert s.dicom.port == 11112
    assert (s.web.host, s.web.port) == ("127.0.0.1", 8080)
    assert s.database_url == "sqlite:///triage-data/triage.db"
    assert s.store == Path("triage-data/store")
    assert s.model is None
    assert s.series.quiet_seconds == 10
    assert s.worker.streaming is True


def test_example_config_is_valid_and_equals_the_defaults(tmp_path: Path) -> None:
    assert load_settings(_toml(tmp_path, EXAMPLE_CONFIG)) == load_settings()


def test_precedence_file_then_environment_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _toml(tmp_path, '[dicom]\nport = 104\nae_title = "FROMFILE"\n[worker]\nbatch_size = 4\n')
    s = load_settings(path)
    assert (s.dicom.port, s.dicom.ae_title, s.worker.batch_size) == (104, "FROMFILE", 4)

    monkeypatch.setenv("TRIAGE_DICOM__PORT", "105")
    monkeypatch.setenv("TRIAGE_WORKER__BATCH_SIZE", "5")
    s = load_settings(path)
    assert (s.dicom.port, s.dicom.ae_title, s.worker.batch_size) == (105, "FROMFILE", 5)

    s = load_settings(path, dicom={"port": 106})
    assert (s.dicom.port, s.dicom.ae_title, s.worker.batch_size) == (106, "FROMFILE", 5)


def test_short_environment_aliases(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRIAGE_AE_TITLE", "ENVAET")
    monkeypatch.setenv("TRIAGE_DICOM_PORT", "4242")
    monkeypatch.setenv("TRIAGE_WEB_PORT", "9090")
    monkeypatch.setenv("TRIAGE_MODEL", str(tmp_path))
    monkeypatch.setenv("TRIAGE_STORAGE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("TRIAGE_DATABASE_URL", "postgresql+psycopg://u@h/db")
    s = load_settings()
    assert (s.dicom.ae_title, s.dicom.port, s.web.port) == ("ENVAET", 4242, 9090)
    assert s.model == tmp_path
    assert s.store == tmp_path / "store"
    assert s.database_url == "postgresql+psycopg://u@h/db"


def test_config_file_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRIAGE_CONFIG", str(_toml(tmp_path, "[web]\nport = 8181\n")))
    assert load_settings().web.port == 8181


def test_data_dir_moves_database_and_store(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path)
    assert s.database_url == f"sqlite:///{tmp_path}/triage.db"
    assert s.store == tmp_path / "store"


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("[dicom]\nport = 70000\n", "dicom.port", 70000),
        ("[web]\nport = -1\n", "web.port", -1),
        ("[dicom]\nbogus = 1\n", "dicom.bogus", 1),
        ("nonsense = true\n", "nonsense", True),
        ('[dicom]\nae_title = "THIS-TITLE-IS-TOO-LONG"\n', "dicom.ae_title", "THIS-TITLE-IS-TOO-LONG"),
        ('[worker]\ndevice = "tpu"\n', "worker.device", "tpu"),
        ("[thresholds]\nany = 1.5\n", "thresholds.any", 1.5),
        ('database_url = "mysql://x/y"\n', "database_url", "mysql://x/y"),
        ('database_url = "not a url"\n', "database_url", "not a url"),
        ('[series]\nbody_part_pattern = "("\n', "series.body_part_pattern", "("),
    ],
)
def test_invalid_file_values_name_key_and_value(tmp_path: Path, text: str, key: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(_toml(tmp_path, text))
    assert info.value.key == key
    assert info.value.value == value
    assert key in str(info.value) and repr(value) in str(info.value)


def test_invalid_environment_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_WEB_PORT", "eighty")
    with pytest.raises(ConfigError, match=r"web\.port='eighty'"):
        load_settings()


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(_toml(tmp_path, "[dicom\n"))


def test_unwritable_storage_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(ConfigError) as info:
        prepare_directories(load_settings(data_dir=tmp_path, storage_dir=blocker / "store"))
    assert info.value.key == "storage_dir"


def test_cli_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[dicom]\nport = 70000\n")
    proc = run_triage("db", "current", "--config", str(tmp_path / "bad.toml"), cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "dicom.port=70000" in lines[0]

    proc = run_triage("serve", cwd=tmp_path, env=triage_env(TRIAGE_DATABASE_URL="oracle://x"))
    assert proc.returncode == 2
    assert "database_url='oracle://x'" in proc.stderr


def test_deploy_example_config_is_the_embedded_one() -> None:
    from tests.helpers import REPO

    assert (REPO / "deploy" / "triage.toml").read_text() == EXAMPLE_CONFIG
