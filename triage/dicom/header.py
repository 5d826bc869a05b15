"""Read and validate the header of a received instance, from its encoded bytes, without decoding pixels.

An :class:`~triage.db.ingest.InstanceHeader` holds only what ingest needs; anything that makes the
instance unusable raises :class:`Rejection` with the DICOM status to answer and a short reason
(never a patient identifier).
"""

from __future__ import annotations

import io
import logging
import math
import re
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from triage.db.ingest import InstanceHeader
from triage.dicom import pixels
from triage.dicom.contexts import ANALYSED_SOP_CLASSES
from triage.errors import DicomInputError
from triage.imaging import z_position

LOGGER = logging.getLogger(__name__)

#: DICOM statuses of DESIGN.md section 5.
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
SOP_CLASS_NOT_SUPPORTED = 0x0122

UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MAX_UID_LENGTH = 64
MIN_MATRIX = 16
MAX_MATRIX = 8192


class Rejection(DicomInputError):
    """An instance that is answered with a failure status and not stored.

    Parameters
    ----------
    status
        The DICOM status to return.
    reason
        A short, fixed reason (a metrics label): ``unreadable``, ``bad_uid``, ``no_pixel_data`` ...
    detail
        What was wrong, naming the value (no patient identifiers).
    """

    def __init__(self, status: int, reason: str, detail: str) -> None:
        self.status = status
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail} (status 0x{status:04X})")


def check_uid(value: object, name: str) -> str:
    """Return ``value`` if it is a valid DICOM UID, else raise :class:`Rejection` (0xC000).

    A valid UID matches ``^[0-9]+(\\.[0-9]+)*$`` and has at most 64 characters: only such UIDs
    ever become parts of a path.
    """
    text = str(value) if value is not None else ""
    if len(text) > MAX_UID_LENGTH or not UID_PATTERN.match(text):
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise Rejection(CANNOT_UNDERSTAND, "bad_uid", f"{name} {shown!r} is not a valid UID (digits and dots, <= 64)")
    return text


def check_sop_class(sop_class_uid: str) -> None:
    """Raise :class:`Rejection` (0x0122) unless the SOP class is one that triage analyses."""
    if sop_class_uid not in ANALYSED_SOP_CLASSES:
        raise Rejection(SOP_CLASS_NOT_SUPPORTED, "sop_class", f"SOP class {sop_class_uid} is not CT")


def read_header(data: bytes, *, sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> InstanceHeader:
    """Parse and validate the header of the encoded instance ``data`` (DICOM file format bytes).

    Parameters
    ----------
    data
        Preamble, file meta information and data set, as received.
    sop_class_uid, sop_instance_uid
        Affected SOP Class / Instance UID of the C-STORE request; the data set must agree.
    transfer_syntax_uid
        The transfer syntax of the presentation context.

    Raises
    ------
    Rejection
        0x0122 for a non-CT SOP class, 0xC000 for unreadable data, bad UIDs, no or insane pixel data,
        0xA900 when the data set does not match the request or its SOP class.
    """
    check_sop_class(sop_class_uid)
    ds, pixel_problem = _parse(data, transfer_syntax_uid)
    try:
        return _validate(ds, pixel_problem, sop_class_uid, sop_instance_uid, transfer_syntax_uid)
    except Rejection:
        raise
    except Exception as exc:  # a lazily decoded element that cannot be read
        detail = f"an element cannot be decoded ({type(exc).__name__})"
        raise Rejection(CANNOT_UNDERSTAND, "unreadable", detail) from exc


def _parse(data: bytes, transfer_syntax_uid: str) -> tuple[Dataset, tuple[str, str] | None]:
    """The data set up to its pixel data, and what is wrong with its pixel data (None: nothing)."""
    fp = io.BytesIO(data)
    try:
        if transfer_syntax_uid == DeflatedExplicitVRLittleEndian:
            ds = dcmread(fp)  # the inflated stream is not ours to peek into: read it all
            return ds, pixels.problem_in(ds)
        ds = dcmread(fp, stop_before_pixels=True)
    except Exception as exc:
        detail = f"not a readable DICOM data set ({type(exc).__name__})"
        raise Rejection(CANNOT_UNDERSTAND, "unreadable", detail) from exc
    return ds, pixels.problem_at(data, fp.tell(), ds, transfer_syntax_uid)


def _validate(
    ds: Dataset, pixel_problem: tuple[str, str] | None, sop_class: str, sop_instance: str, syntax: str
) -> InstanceHeader:
    if "SOPClassUID" not in ds:
        raise Rejection(CANNOT_UNDERSTAND, "unreadable", "the data set has no SOP Class UID")
    data_set_class = check_uid(ds.SOPClassUID, "SOP Class UID")
    if data_set_class != sop_class:
        detail = f"data set SOP class {data_set_class} differs from the request's {sop_class}"
        raise Rejection(DATASET_MISMATCH, "sop_class_mismatch", detail)
    check_uid(sop_instance, "Affected SOP Instance UID")
    if str(ds.get("SOPInstanceUID", "")) != sop_instance:
        detail = "data set SOP Instance UID differs from the request's"
        raise Rejection(DATASET_MISMATCH, "sop_instance_mismatch", detail)
    study = check_uid(ds.get("StudyInstanceUID"), "Study Instance UID")
    series = check_uid(ds.get("SeriesInstanceUID"), "Series Instance UID")
    modality = _text(ds, "Modality")
    if modality != "CT":
        raise Rejection(DATASET_MISMATCH, "modality", f"modality {modality[:32]!r} does not match a CT SOP class")
    _check_matrix(ds)
    if pixel_problem is not None:
        raise Rejection(CANNOT_UNDERSTAND, *pixel_problem)
    return InstanceHeader(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        study_uid=study,
        series_uid=series,
        transfer_syntax_uid=syntax,
        modality=modality,
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        accession_number=_text(ds, "AccessionNumber"),
        study_description=_text(ds, "StudyDescription"),
        study_date=_date(ds),
        series_number=_int(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        body_part=_text(ds, "BodyPartExamined"),
        slice_thickness=_float(ds, "SliceThickness"),
        image_type=_multi(ds, "ImageType"),
        instance_number=_int(ds, "InstanceNumber"),
        z_position=_z_position(ds),
        expected_instances=_expected(ds),
    )


def _check_matrix(ds: Dataset) -> None:
    for name in ("Rows", "Columns"):
        value = _int(ds, name)
        if value is None or not MIN_MATRIX <= value <= MAX_MATRIX:
            raise Rejection(CANNOT_UNDERSTAND, "matrix", f"{name} {value!r} is outside {MIN_MATRIX}..{MAX_MATRIX}")


def _z_position(ds: Dataset) -> float | None:
    try:
        return z_position(ds)
    except Exception:  # malformed geometry: the slice has no usable position
        return None


def _expected(ds: Dataset) -> int | None:
    """Images in Acquisition, when the scanner says how many slices the series will have."""
    value = _int(ds, "ImagesInAcquisition")
    return value if value is not None and value > 0 else None


def _get(ds: Dataset, name: str) -> Any:
    try:
        return ds.get(name)
    except Exception:  # an element whose value cannot be decoded counts as absent
        return None


def _text(ds: Dataset, name: str) -> str:
    value = _get(ds, name)
    return "" if value is None else str(value).replace("\x00", "").strip()


def _multi(ds: Dataset, name: str) -> str:
    value = _get(ds, name)
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    return "\\".join(str(v).strip() for v in value)


def _int(ds: Dataset, name: str) -> int | None:
    value = _get(ds, name)
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def _float(ds: Dataset, name: str) -> float | None:
    value = _get(ds, name)
    try:
        number = None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None
    return number if number is not None and math.isfinite(number) else None


def _date(ds: Dataset) -> str:
    value = _text(ds, "StudyDate")
    return value if re.fullmatch(r"\d{8}", value) else ""
