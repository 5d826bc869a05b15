"""Phantom slices (HU) -> DICOM datasets: valid CT Image Storage, or RSNA-Kaggle-like objects.

Normal layout: every attribute the CT Image IOD requires, valid 2.25 UIDs derived from the seed,
RescaleIntercept -1024, signed (PixelPaddingValue -2000 outside the field of view) or unsigned
(12 or 16 bits stored) pixels. Kaggle layout: only the attributes the RSNA 2019 files kept
(``ID_xxxxxxxxx`` identifiers in the UID attributes, no SOP Class UID or Instance Number), with
their pixel encodings: signed 16 bits with -2000 outside the field of view, unsigned 12 bits, and
the 12-bit files with intercept 1 whose negative values wrap past 4096.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, CTImageStorage, ExplicitVRLittleEndian

from triage import __version__

LOGGER = logging.getLogger(__name__)

SLICE_THICKNESS = 5.0
MANUFACTURER = "triage synth"
STUDY_DESCRIPTION = "CT HEAD WO CONTRAST"
SERIES_DESCRIPTIONS = ("HEAD WO CONTRAST", "AXIAL 5MM BRAIN", "HEAD 5.0 H30S")


@dataclass(frozen=True)
class Encoding:
    """How HU become stored pixel values."""

    name: str
    signed: bool
    bits_stored: int
    intercept: float
    outside: float  # HU written outside the reconstruction circle
    padding_tag: bool = False
    wrapped: bool = False

    def stored(self, hu: np.ndarray) -> np.ndarray:
        """HU (float) -> stored values (int16 / uint16 little-endian array)."""
        if self.wrapped:
            raw = np.clip(np.rint(hu - self.intercept), -1000, 3095).astype(np.int32)
            return (raw % 4096).astype("<u2")
        raw = np.rint(hu - self.intercept)
        if self.signed:
            low, high = -(1 << (self.bits_stored - 1)), (1 << (self.bits_stored - 1)) - 1
            return np.clip(raw, low, high).astype("<i2")
        return np.clip(raw, 0, (1 << self.bits_stored) - 1).astype("<u2")

    @property
    def padding_value(self) -> int:
        """The stored value written outside the field of view."""
        return int(self.stored(np.array([self.outside], dtype=np.float32))[0])


NORMAL_ENCODINGS = (
    Encoding("signed", True, 16, -1024.0, -3024.0, padding_tag=True),
    Encoding("unsigned16", False, 16, -1024.0, -1024.0, padding_tag=True),
    Encoding("unsigned12", False, 12, -1024.0, -1024.0, padding_tag=True),
)
KAGGLE_ENCODINGS = (
    Encoding("signed", True, 16, -1024.0, -3024.0),
    Encoding("unsigned12", False, 12, -1024.0, -1024.0),
    Encoding("wrapped12", False, 12, 1.0, -1000.0, wrapped=True),
)
KAGGLE_WEIGHTS = (0.55, 0.3, 0.15)


@dataclass(frozen=True)
class StudyHeader:
    """The identifiers and descriptive fields shared by all slices of one study."""

    study_uid: str
    series_uid: str
    frame_uid: str
    patient_id: str
    patient_name: str
    accession: str
    birth_date: str
    sex: str
    age: int
    when: dt.datetime
    series_description: str
    series_number: int
    encoding: Encoding
    tilt: float
    table_z: float
    kaggle: bool
    window: tuple[str, str]



def make_header(rng: np.random.Generator, entropy: str, number: int, kaggle: bool, tilt: float) -> StudyHeader:
    """Random, synthetic study fields; UIDs derived from ``entropy`` (the study's parameters)."""
    if kaggle:
        encoding = KAGGLE_ENCODINGS[int(rng.choice(len(KAGGLE_ENCODINGS), p=KAGGLE_WEIGHTS))]
        ids = [f"ID_{rng.bytes(n).hex()[: 2 * n]}" for n in (5, 5, 5, 4)]
        study_uid, series_uid, frame_uid, patient_id = ids[0], ids[1], ids[2], ids[3][:11]
    else:
        encoding = NORMAL_ENCODINGS[int(rng.integers(len(NORMAL_ENCODINGS)))]
        study_uid, series_uid, frame_uid = (derived_uid(entropy, kind) for kind in ("study", "series", "frame"))
        patient_id = f"SYN{int(rng.integers(10**6, 10**7))}"
    when = dt.datetime(2021, 1, 1) + dt.timedelta(minutes=int(rng.integers(0, 4 * 365 * 24 * 60)))
    age = int(rng.integers(18, 96))
    windows = [("40", "80"), ("00040", "00080"), ("40\\40", "80\\80"), ("35", "80")]
    return StudyHeader(
        study_uid=study_uid,
        series_uid=series_uid,
        frame_uid=frame_uid,
        patient_id=patient_id,
        patient_name=f"PHANTOM^{number:05d}",
        accession=f"SYN{int(rng.integers(10**7, 10**8))}",
        birth_date=f"{when.year - age}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
        sex=str(rng.choice(["F", "M"])),
        age=age,
        when=when,
        series_description=str(rng.choice(SERIES_DESCRIPTIONS)),
        series_number=int(rng.integers(2, 9)),
        encoding=encoding,
        tilt=tilt,
        table_z=float(rng.uniform(-180.0, -60.0)),
        kaggle=kaggle,
        window=windows[int(rng.integers(len(windows)))] if kaggle else ("40", "80"),
    )


def geometry(header: StudyHeader, rows: int, spacing: float, height: float) -> tuple[list[float], list[float], float]:
    """(ImagePositionPatient, ImageOrientationPatient, position along the normal) of one slice."""
    tilt = math.radians(header.tilt)
    row_dir = np.array([1.0, 0.0, 0.0])
    col_dir = np.array([0.0, math.cos(tilt), -math.sin(tilt)])
    normal = np.cross(row_dir, col_dir)
    centre = np.array([0.0, 0.0, header.table_z]) + height * normal
    corner = centre - (rows - 1) / 2.0 * spacing * (row_dir + col_dir)
    position = [round(float(v), 4) + 0.0 for v in corner]
    orientation = [round(float(v), 6) + 0.0 for v in (*row_dir, *col_dir)]
    z = float(np.dot(position, normal))
    return position, orientation, z


def _uid_element(ds: Dataset, tag: int, value: str) -> None:
    """Set a UI attribute without validation (the RSNA identifiers are not valid UIDs)."""
    ds[tag] = DataElement(tag, "UI", value, validation_mode=config.IGNORE)


#: Namespace of the name-based UUIDs behind the phantom UIDs.
UID_NAMESPACE = uuid.UUID("6f1c1a52-5d0e-4c55-9a43-7e2b1c9d0f11")


def derived_uid(*parts: str) -> str:
    """A valid UID (2.25 + a name-based UUID, ISO/IEC 9834-8) that depends only on ``parts``."""
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, ':'.join(parts)).int}"


@contextmanager
def rsna_identifiers() -> Iterator[None]:
    """Let pydicom copy and write the ``ID_`` identifiers without warning that they are not UIDs.

    ``dcmwrite`` deep-copies the file meta, which re-validates every UID with the global reading
    validation mode; it is switched off for the duration (single-threaded writer only).
    """
    previous = config.settings.reading_validation_mode
    config.settings.reading_validation_mode = config.IGNORE
    try:
        yield
    finally:
        config.settings.reading_validation_mode = previous


def file_meta(sop_uid: str, kaggle: bool) -> FileMetaDataset:
    """File meta information: CT Image Storage, explicit VR little endian."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    if kaggle:
        _uid_element(meta, 0x00020003, sop_uid)
    else:
        meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"TRIAGE_{__version__}"[:16]
    return meta


def build_dataset(
    header: StudyHeader, sop_uid: str, instance: int, hu: np.ndarray, spacing: float, height: float
) -> Dataset:
    """One slice as a pydicom Dataset with file meta, ready for ``save_as`` or C-STORE."""
    rows = hu.shape[0]
    position, orientation, z = geometry(header, rows, spacing, height)
    if header.kaggle:
        ds = _kaggle_dataset(header, sop_uid, position, orientation)
    else:
        ds = _ct_dataset(header, sop_uid, instance, position, orientation, z)
    enc = header.encoding
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = hu.shape[1]
    ds.PixelSpacing = [f"{spacing:.6g}", f"{spacing:.6g}"]
    ds.BitsAllocated = 16
    ds.BitsStored = enc.bits_stored
    ds.HighBit = enc.bits_stored - 1
    ds.PixelRepresentation = int(enc.signed)
    if enc.padding_tag and not header.kaggle:
        ds.PixelPaddingValue = enc.padding_value
    ds.WindowCenter = header.window[0].split("\\") if "\\" in header.window[0] else header.window[0]
    ds.WindowWidth = header.window[1].split("\\") if "\\" in header.window[1] else header.window[1]
    ds.RescaleIntercept = f"{enc.intercept:g}"
    ds.RescaleSlope = "1"
    if not header.kaggle:
        ds.RescaleType = "HU"
    ds.PixelData = enc.stored(hu).tobytes()
    ds["PixelData"].VR = "OW"
    ds.file_meta = file_meta(sop_uid, header.kaggle)
    return ds


def _kaggle_dataset(header: StudyHeader, sop_uid: str, position: list[float], orientation: list[float]) -> Dataset:
    ds = Dataset()
    _uid_element(ds, 0x00080018, sop_uid)
    ds.Modality = "CT"
    ds.PatientID = header.patient_id
    _uid_element(ds, 0x0020000D, header.study_uid)
    _uid_element(ds, 0x0020000E, header.series_uid)
    ds.StudyID = ""
    ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
    return ds


def _ct_dataset(
    header: StudyHeader, sop_uid: str, instance: int, position: list[float], orientation: list[float], z: float
) -> Dataset:
    ds = Dataset()
    when = header.when
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = time
    ds.AccessionNumber = header.accession
    ds.Modality = "CT"
    ds.Manufacturer = MANUFACTURER
    ds.InstitutionName = "Synthetic Phantom Hospital"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = STUDY_DESCRIPTION
    ds.SeriesDescription = header.series_description
    ds.ManufacturerModelName = "phantom"
    ds.PatientName = header.patient_name
    ds.PatientID = header.patient_id
    ds.PatientBirthDate = header.birth_date
    ds.PatientSex = header.sex
    ds.PatientAge = f"{header.age:03d}Y"
    ds.BodyPartExamined = "HEAD"
    ds.SliceThickness = f"{SLICE_THICKNESS:g}"
    ds.KVP = "120"
    ds.GantryDetectorTilt = f"{header.tilt:.1f}"
    ds.ConvolutionKernel = "H30s"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = header.study_uid
    ds.SeriesInstanceUID = header.series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = header.series_number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
    ds.FrameOfReferenceUID = header.frame_uid
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = f"{z:.4f}"
    return ds
