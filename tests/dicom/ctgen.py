"""Small generated CT series for the DICOM tests (plain pydicom, uncompressed, deterministic)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid


def ct_series(
    slices: int = 10,
    *,
    seed: int = 0,
    rows: int = 32,
    spacing: float = 5.0,
    study_uid: str | None = None,
    series_uid: str | None = None,
    images_in_acquisition: bool = False,
    body_part: str = "HEAD",
    description: str = "CT HEAD WO",
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    thickness: float = 5.0,
    modality: str = "CT",
) -> list[Dataset]:
    """``slices`` CT slices of one series, ``spacing`` mm apart, with random pixel data."""
    rng = np.random.default_rng(seed)
    prefix = f"1.2.826.0.1.3680043.10.1000.{seed}."
    study_uid = study_uid or generate_uid(prefix=prefix)
    series_uid = series_uid or generate_uid(prefix=prefix)
    frame_uid = generate_uid(prefix=prefix)
    return [
        _slice(i, rng, rows, spacing, study_uid, series_uid, frame_uid, slices if images_in_acquisition else None,
               body_part, description, image_type, thickness, modality, prefix)
        for i in range(slices)
    ]


def _slice(i, rng, rows, spacing, study_uid, series_uid, frame_uid, expected, body_part, description, image_type,
           thickness, modality, prefix) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid(prefix=prefix)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = CTImageStorage
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.Modality = modality
    ds.PatientID = "TEST0001"
    ds.PatientName = "Test^Patient"
    ds.AccessionNumber = "ACC0001"
    ds.StudyDate = "20240102"
    ds.StudyDescription = description
    ds.SeriesDescription = description
    ds.SeriesNumber = 2
    ds.InstanceNumber = i + 1
    ds.BodyPartExamined = body_part
    ds.ImageType = list(image_type)
    ds.SliceThickness = thickness
    ds.ImagePositionPatient = [-100.0, -100.0, i * spacing]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    if expected is not None:
        ds.ImagesInAcquisition = expected
    ds.Rows = ds.Columns = rows
    ds.PixelSpacing = [0.5, 0.5]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.PixelData = rng.integers(0, 2000, (rows, rows), dtype=np.int16).tobytes()
    return ds


def write_series(directory: Path, datasets: Sequence[Dataset]) -> list[Path]:
    """Write ``datasets`` as DICOM files into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, ds in enumerate(datasets):
        path = directory / f"{n:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
