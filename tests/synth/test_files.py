"""The DICOM files of the phantoms: valid CT objects (DCMTK, dicom3tools), RSNA-like Kaggle objects."""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage

from triage.imaging import AIR_HU, to_hu
from triage.synth import make_study
from triage.synth.files import KAGGLE_ENCODINGS, NORMAL_ENCODINGS, rsna_identifiers

# The RSNA identifiers are not UIDs: pydicom warns when it reads them, as it does on the real files.
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI")


def save(ds, path: Path, kaggle: bool = False) -> Path:
    if kaggle:
        with rsna_identifiers():
            ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, enforce_file_format=True)
    return path


def read_quietly(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def test_normal_files_pass_dcmftest_and_dciodvfy(tmp_path):
    for tool in ("dcmftest", "dciodvfy"):
        assert shutil.which(tool), f"{tool} is required (Debian packages dcmtk, dicom3tools)"
    study = make_study(31, slices=2, rows=128, subtypes=("subdural",))
    for index, ds in enumerate(study.datasets):
        path = save(ds, tmp_path / f"{index}.dcm")
        ftest = subprocess.run(["dcmftest", str(path)], capture_output=True, text=True, check=False)
        assert ftest.returncode == 0 and ftest.stdout.startswith("yes:"), ftest.stdout
        check = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
        report = check.stdout + check.stderr
        assert "CTImage" in report
        assert "Error" not in report, report
        assert "Warning" not in report, report


def test_normal_files_carry_the_required_fields(tmp_path):
    study = make_study(32, slices=3, rows=128)
    ds = read_quietly(save(study.datasets[0], tmp_path / "a.dcm"))
    assert ds.SOPClassUID == CTImageStorage
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID):
        assert uid.is_valid and uid.startswith("2.25.")
    assert ds.Modality == "CT" and ds.BodyPartExamined == "HEAD"
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert float(ds.RescaleIntercept) == -1024 and float(ds.RescaleSlope) == 1
    assert float(ds.SliceThickness) == 5.0
    assert [float(v) for v in ds.PixelSpacing] == [1.8, 1.8]  # 230.4 mm / 128
    assert make_study(32, slices=1).datasets[0].PixelSpacing == [0.45, 0.45]
    assert "WO CONTRAST" in ds.StudyDescription
    assert ds.PatientName.family_name == "PHANTOM" and ds.PatientID.startswith("SYN")
    assert len(ds.ImagePositionPatient) == 3 and len(ds.ImageOrientationPatient) == 6


def test_both_pixel_representations_occur_and_decode_to_the_rendered_hu():
    seen = set()
    for seed in range(40):
        study = make_study(seed, slices=1, rows=64, keep_hu=True)
        ds = study.datasets[0]
        seen.add((int(ds.PixelRepresentation), int(ds.BitsStored)))
        assert study.hu is not None
        expected = np.maximum(np.clip(np.rint(study.hu[0]), -1024, 3071), AIR_HU)
        np.testing.assert_array_equal(to_hu(ds), expected)
        if len(seen) == len(NORMAL_ENCODINGS):
            break
    assert seen == {(1, 16), (0, 16), (0, 12)}


def test_kaggle_objects_look_like_the_rsna_files(tmp_path):
    study = make_study(33, slices=2, rows=128, kaggle=True, subtypes=("epidural",))
    path = save(study.datasets[0], tmp_path / f"{study.datasets[0].SOPInstanceUID}.dcm", kaggle=True)
    ds = read_quietly(path)
    assert path.name.startswith("ID_") and len(path.stem) == 12
    assert str(ds.SOPInstanceUID).startswith("ID_") and str(ds.StudyInstanceUID).startswith("ID_")
    assert str(ds.SeriesInstanceUID).startswith("ID_") and str(ds.PatientID).startswith("ID_")
    assert ds.StudyInstanceUID == study.study_uid
    for absent in ("SOPClassUID", "InstanceNumber", "PatientName", "StudyDate", "RescaleType"):
        assert absent not in ds, absent
    assert ds.StudyID == "" and ds.Modality == "CT"
    assert ds.file_meta.MediaStorageSOPClassUID == CTImageStorage
    assert ds.BitsAllocated == 16 and ds.Rows == 128


def test_kaggle_encodings_include_the_12_bit_wrap_and_decode_back():
    seen = {}
    for seed in range(200):
        study = make_study(seed, slices=1, rows=64, kaggle=True, keep_hu=True)
        ds = study.datasets[0]
        key = (int(ds.PixelRepresentation), int(ds.BitsStored), float(ds.RescaleIntercept))
        seen.setdefault(key, (ds, study.hu))
        if len(seen) == len(KAGGLE_ENCODINGS):
            break
    assert set(seen) == {(1, 16, -1024.0), (0, 12, -1024.0), (0, 12, 1.0)}
    ds, hu = seen[(0, 12, 1.0)]
    assert hu is not None
    expected = np.clip(np.rint(hu[0] - 1) + 1, -999, 3096)
    np.testing.assert_array_equal(to_hu(ds), np.maximum(expected, AIR_HU))
    signed, _ = seen[(1, 16, -1024.0)]
    raw = signed.pixel_array
    assert raw[0, 0] == -2000  # outside the reconstruction circle, like the RSNA files (no padding tag)
    assert "PixelPaddingValue" not in signed


@pytest.mark.parametrize("kaggle", [False, True])
def test_files_round_trip_through_pydicom(tmp_path, kaggle):
    study = make_study(34, slices=2, rows=128, kaggle=kaggle)
    for ds in study.datasets:
        again = read_quietly(save(ds, tmp_path / "x.dcm", kaggle))
        np.testing.assert_array_equal(to_hu(again), to_hu(ds))
