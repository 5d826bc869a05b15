"""TLS from the settings: DCMTK peers with certificates from a test CA (made with the openssl tool)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dicom.conftest import echoscu, storescu
from tests.dicom.ctgen import ct_series, write_series
from triage.dicom.server import DicomServer
from triage.errors import ConfigError


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=directory)


def make_cert(directory: Path, ca: str, name: str) -> None:
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", cwd=directory)
    (directory / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=directory)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    make_ca(directory, "ca")
    make_ca(directory, "otherca")
    make_cert(directory, "ca", "server")
    make_cert(directory, "ca", "client")
    make_cert(directory, "otherca", "stranger")
    return directory


@pytest.fixture
def tls_scp(scp_settings, factory, pki: Path) -> Iterator[DicomServer]:
    scp_settings.dicom = scp_settings.dicom.model_copy(update={
        "tls_cert": str(pki / "server.crt"), "tls_key": str(pki / "server.key"), "tls_ca": str(pki / "ca.crt")})
    server = DicomServer(scp_settings, factory)
    server.start()
    yield server
    server.stop(grace_seconds=2)


def tls_args(pki: Path, client: str = "client") -> tuple[str, ...]:
    return ("+tls", str(pki / f"{client}.key"), str(pki / f"{client}.crt"), "-pw", "+cf", str(pki / "ca.crt"))


def test_tls_peers_with_a_certificate_of_the_ca_echo_and_store(tls_scp: DicomServer, pki: Path, tmp_path: Path,
                                                                rows) -> None:
    result = echoscu(tls_scp.port, extra=tls_args(pki))
    assert result.returncode == 0, result.stderr
    paths = write_series(tmp_path / "in", ct_series(3, seed=21))
    result = storescu(tls_scp.port, *paths, extra=tls_args(pki))
    assert result.returncode == 0, result.stderr
    assert len(rows()[0]) == 3


def test_plain_tcp_and_strangers_are_refused(tls_scp: DicomServer, pki: Path, rows) -> None:
    assert echoscu(tls_scp.port).returncode != 0
    assert echoscu(tls_scp.port, extra=tls_args(pki, "stranger")).returncode != 0
    assert echoscu(tls_scp.port, extra=tls_args(pki)).returncode == 0  # the server survived both


def test_unreadable_certificates_are_a_configuration_error(scp_settings, factory, tmp_path: Path) -> None:
    scp_settings.dicom = scp_settings.dicom.model_copy(update={
        "tls_cert": str(tmp_path / "missing.crt"), "tls_key": str(tmp_path / "missing.key")})
    with pytest.raises(ConfigError, match="dicom.tls_cert"):
        DicomServer(scp_settings, factory).start()
