"""Header validation of received bytes: statuses and reasons for everything that is refused."""

from __future__ import annotations

import io

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
)

from tests.dicom.ctgen import ct_series
from triage.dicom.header import Rejection, check_uid, read_header
from triage.dicom.store import DicomStore

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI", "ignore:The value length")


def encode(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def header_of(ds: Dataset, syntax: str = ExplicitVRLittleEndian, **request: str):
    data = encode(ds, syntax)
    kwargs = {"sop_class_uid": ds.SOPClassUID, "sop_instance_uid": ds.SOPInstanceUID, "transfer_syntax_uid": syntax}
    kwargs.update(request)
    return read_header(data, **kwargs)


def refused(ds: Dataset, **request: str) -> Rejection:
    with pytest.raises(Rejection) as info:
        header_of(ds, **request)
    return info.value


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
                                    DeflatedExplicitVRLittleEndian])
def test_a_valid_slice_gives_its_header(syntax: str) -> None:
    ds = ct_series(3, seed=7, images_in_acquisition=True)[2]
    header = header_of(ds, syntax)
    assert (header.study_uid, header.series_uid, header.sop_instance_uid) == (
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert header.transfer_syntax_uid == syntax
    assert (header.instance_number, header.z_position, header.expected_instances) == (3, 10.0, 3)
    assert (header.patient_id, header.patient_name, header.study_date) == ("TEST0001", "Test^Patient", "20240102")
    assert (header.body_part, header.slice_thickness, header.image_type) == ("HEAD", 5.0, "ORIGINAL\\PRIMARY\\AXIAL")


def test_a_non_ct_sop_class_gets_0x0122() -> None:
    ds = ct_series(1)[0]
    ds.SOPClassUID = MRImageStorage
    error = refused(ds)
    assert (error.status, error.reason) == (0x0122, "sop_class")


def test_unreadable_bytes_get_0xc000() -> None:
    with pytest.raises(Rejection) as info:
        read_header(b"\x00" * 128 + b"DICM" + b"\xff" * 50, sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                    sop_instance_uid="1.2.3", transfer_syntax_uid=ExplicitVRLittleEndian)
    assert (info.value.status, info.value.reason) == (0xC000, "unreadable")


def test_no_pixel_data_gets_0xc000() -> None:
    ds = ct_series(1)[0]
    del ds.PixelData
    error = refused(ds)
    assert (error.status, error.reason) == (0xC000, "no_pixel_data")


def test_a_data_set_of_another_sop_class_than_requested_gets_0xa900() -> None:
    ds = ct_series(1)[0]
    error = refused(ds, sop_class_uid="1.2.840.10008.5.1.4.1.1.2.1")
    assert (error.status, error.reason) == (0xA900, "sop_class_mismatch")
    error = refused(ds, sop_instance_uid="1.2.3.4")
    assert (error.status, error.reason) == (0xA900, "sop_instance_mismatch")


def test_a_ct_sop_class_with_another_modality_gets_0xa900() -> None:
    ds = ct_series(1)[0]
    ds.Modality = "MR"
    error = refused(ds)
    assert (error.status, error.reason) == (0xA900, "modality")
    assert "'MR'" in str(error)


@pytest.mark.parametrize("rows", [0, 4, 20000])
def test_insane_matrix_sizes_get_0xc000(rows: int) -> None:
    ds = ct_series(1)[0]
    ds.Rows = rows
    error = refused(ds)
    assert (error.status, error.reason) == (0xC000, "matrix")


BAD_UIDS = ["../..", "1.2/3", "1.2.3/../../etc", "1" * 65, "ID_1234abcd", "", "1..2", ".1.2", "1.2.", "1.-2", "1 .2"]


@pytest.mark.parametrize("bad", BAD_UIDS)
@pytest.mark.parametrize("element", ["StudyInstanceUID", "SeriesInstanceUID"])
def test_bad_study_and_series_uids_are_rejected(bad: str, element: str) -> None:
    ds = ct_series(1)[0]
    setattr(ds, element, bad)
    error = refused(ds)
    assert (error.status, error.reason) == (0xC000, "bad_uid")


@pytest.mark.parametrize("bad", BAD_UIDS)
def test_bad_sop_instance_uids_are_rejected(bad: str) -> None:
    ds = ct_series(1)[0]
    ds.SOPInstanceUID = bad
    ds.file_meta.MediaStorageSOPInstanceUID = bad or "1.2"
    with pytest.raises(Rejection) as info:
        header_of(ds, sop_instance_uid=bad)
    assert (info.value.status, info.value.reason) == (0xC000, "bad_uid")


@pytest.mark.parametrize("bad", BAD_UIDS)
def test_bad_uids_never_become_paths(bad: str) -> None:
    with pytest.raises(Rejection):
        check_uid(bad, "UID")
    with pytest.raises(Rejection):
        DicomStore.relative_path("1.2.3", "1.2.3.4", bad)
    assert DicomStore.relative_path("1.2", "1.2.3", "1.2.3.4") == "1.2/1.2.3/1.2.3.4.dcm"


def test_undecodable_values_count_as_absent() -> None:
    ds = ct_series(1)[0]
    ds.add_new(0x00180050, "LO", "abc")  # SliceThickness, InstanceNumber, StudyDate as a broken sender writes them
    ds.add_new(0x00200013, "LO", "x1")
    ds.add_new(0x00080020, "LO", "2024-01-02")
    header = header_of(ds)
    assert (header.slice_thickness, header.instance_number, header.study_date) == (None, None, "")


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_truncated_pixel_data_gets_0xc000(syntax: str) -> None:
    ds = ct_series(1)[0]
    data = encode(ds, syntax)
    for cut in (1, 100, len(ds.PixelData) - 2):
        with pytest.raises(Rejection) as info:
            read_header(data[:-cut], sop_class_uid=ds.SOPClassUID, sop_instance_uid=ds.SOPInstanceUID,
                        transfer_syntax_uid=syntax)
        assert (info.value.status, info.value.reason) == (0xC000, "truncated")


def test_pixel_data_shorter_than_the_image_gets_0xc000() -> None:
    ds = ct_series(1)[0]
    ds.PixelData = ds.PixelData[:-64]
    error = refused(ds)
    assert (error.status, error.reason) == (0xC000, "truncated")
