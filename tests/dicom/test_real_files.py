"""Files nobody here wrote (pydicom's and pydicom-data's, DCMTK conversions of them) sent by DCMTK storescu."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.pixels import get_decoder
from pydicom.uid import (
    JPEG2000,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE, _config
from pynetdicom.dsutils import split_dataset

from tests.dicom.conftest import store_files, storescu
from triage.dicom.contexts import TRANSFER_SYNTAXES
from triage.dicom.server import DicomServer

CT_SMALL = "CT_small.dcm"
#: (source file, DCMTK conversion, storescu options, transfer syntax received, pixel array shape)
CASES = [
    (CT_SMALL, None, (), ExplicitVRLittleEndian, (128, 128)),
    ("693_UNCI.dcm", None, ("-xi",), ImplicitVRLittleEndian, (512, 512)),
    ("693_J2KR.dcm", None, ("-xv",), JPEG2000Lossless, (512, 512)),
    ("693_J2KI.dcm", None, ("-xw",), JPEG2000, (512, 512)),
    ("eCT_Supplemental.dcm", None, (), ExplicitVRLittleEndian, (2, 512, 512)),
    (CT_SMALL, ("dcmconv", "+tb"), ("-xb",), ExplicitVRBigEndian, (128, 128)),
    (CT_SMALL, ("dcmconv", "+td"), ("-xd",), DeflatedExplicitVRLittleEndian, (128, 128)),
    (CT_SMALL, ("dcmcrle",), ("-xr",), RLELossless, (128, 128)),
    (CT_SMALL, ("dcmcjpeg",), ("-xs",), JPEGLosslessSV1, (128, 128)),
    (CT_SMALL, ("dcmcjpeg", "+ee"), ("-xx",), JPEGExtended12Bit, (128, 128)),
    (CT_SMALL, ("dcmcjpls",), ("-xt",), JPEGLSLossless, (128, 128)),
]


def prepare(tmp_path: Path, name: str, conversion: tuple[str, ...] | None) -> Path:
    source = Path(get_testdata_file(name))
    if conversion is None:
        return source
    target = tmp_path / f"{conversion[0]}-{'-'.join(conversion[1:])}-{name}"
    subprocess.run([*conversion, str(source), str(target)], check=True, capture_output=True)
    return target


@pytest.mark.parametrize(("name", "conversion", "options", "syntax", "shape"), CASES,
                         ids=[f"{c[0]}-{c[3].name}" for c in CASES])
def test_real_ct_files_are_stored_as_received_and_decodable(scp: DicomServer, tmp_path: Path, rows, scp_settings,
                                                            name, conversion, options, syntax, shape) -> None:
    path = prepare(tmp_path, name, conversion)
    result = storescu(scp.port, path, extra=options)
    assert result.returncode == 0, result.stderr
    assert "Received Store Response (Success)" in result.stderr, result.stderr
    (instance,), (series,) = rows()
    assert instance.transfer_syntax_uid == syntax
    stored = pydicom.dcmread(scp_settings.store / instance.path)
    assert stored.file_meta.TransferSyntaxUID == syntax
    assert stored.pixel_array.shape == shape
    original = pydicom.dcmread(path)
    if syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless,
                  JPEGLosslessSV1, JPEG2000Lossless, JPEGLSLossless, DeflatedExplicitVRLittleEndian):
        assert (stored.pixel_array == original.pixel_array).all()
    assert series.num_instances == 1


@pytest.mark.parametrize(("name", "options"), [
    ("MR_small.dcm", ()), ("MR_small_RLE.dcm", ("-xr",)), ("emri_small_big_endian.dcm", ("-xb",)),
    ("RG1_UNCI.dcm", ()), ("US1_J2KR.dcm", ("-xv",)), ("rtplan.dcm", ()),
])
def test_non_ct_files_get_0x0122_and_are_not_stored(scp: DicomServer, scp_settings, rows, name: str,
                                                     options: tuple[str, ...]) -> None:
    result = storescu(scp.port, get_testdata_file(name), extra=options)
    assert "Refused: SOPClassNotSupported" in result.stderr, result.stderr
    assert rows() == ([], [])
    assert store_files(scp_settings.store) == []


def send_raw(port: int, path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Send the bytes of ``path`` as they are (pynetdicom's chunked send: no decoding, no checks)."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    meta = pydicom.filereader.read_file_meta_info(path)
    ae = AE(ae_title="RAW")
    ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(path).Status)
    finally:
        assoc.release()


@pytest.mark.parametrize(("name", "keep"), [("693_UNCI.dcm", 0.5), ("693_J2KR.dcm", 0.7), (CT_SMALL, 0.99)])
def test_truncated_files_get_0xc000_and_leave_nothing_behind(scp: DicomServer, scp_settings, rows, tmp_path,
                                                             monkeypatch, name: str, keep: float) -> None:
    data = Path(get_testdata_file(name)).read_bytes()
    path = tmp_path / "truncated.dcm"
    path.write_bytes(data[: int(len(data) * keep)])
    assert send_raw(scp.port, path, monkeypatch) == 0xC000
    assert rows() == ([], [])
    assert list(scp_settings.store.rglob("*.dcm")) == [] and list(scp_settings.store.rglob("*.part")) == []


def test_an_unparseable_data_set_gets_0xc000(scp: DicomServer, scp_settings, rows, tmp_path, monkeypatch) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta)
    path = tmp_path / "garbage.dcm"
    path.write_bytes(buffer.getvalue() + b"\x08\x00\x16\x00SQ\x00\x00\xff\xff\xff\xff" + b"\x13\x37" * 40)
    assert send_raw(scp.port, path, monkeypatch) == 0xC000
    assert rows() == ([], [])
    assert list(scp_settings.store.rglob("*.dcm")) == []


def test_every_accepted_transfer_syntax_can_be_decoded_later() -> None:
    for syntax in TRANSFER_SYNTAXES:
        assert get_decoder(syntax).is_available, syntax


def test_the_stored_bytes_are_the_received_bytes(scp: DicomServer, scp_settings, rows, tmp_path, monkeypatch) -> None:
    path = Path(get_testdata_file("693_J2KR.dcm"))
    assert send_raw(scp.port, path, monkeypatch) == 0
    (instance,), _ = rows()
    stored = scp_settings.store / instance.path
    (_, sent_at), (_, kept_at) = split_dataset(path), split_dataset(stored)
    assert stored.read_bytes()[kept_at:] == path.read_bytes()[sent_at:]


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI", "ignore:The value length")
@pytest.mark.parametrize("bad", ["../../../../tmp/evil", "1.2/3", "1" * 80, "1.2.3\\\\..\\\\x"])
def test_path_traversal_uids_over_the_network_get_0xc000(scp: DicomServer, scp_settings, rows, tmp_path,
                                                         monkeypatch, bad: str) -> None:
    ds = pydicom.dcmread(get_testdata_file(CT_SMALL))
    ds.SeriesInstanceUID = bad
    path = tmp_path / "evil.dcm"
    ds.save_as(path)
    assert send_raw(scp.port, path, monkeypatch) == 0xC000
    assert rows() == ([], [])
    assert not Path("/tmp/evil").exists() and not Path("/tmp/evil.dcm").exists()
    assert list(scp_settings.store.rglob("*.dcm")) == []
