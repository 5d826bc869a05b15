"""Make research DICOM files sendable: invalid UIDs replaced by deterministic ``2.25.`` UIDs.

Research datasets (RSNA's ``ID_xxxxxxxx`` files, for example) carry UIDs that no receiver may turn
into paths, and sometimes no SOP Class UID. The same invalid UID always maps to the same new UID (a
name-based UUID, PS3.5 B.2), so series and studies stay together across files and runs.
"""

from __future__ import annotations

import uuid

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from triage.dicom.header import MAX_UID_LENGTH, UID_PATTERN

#: Namespace of the name-based UUIDs that replace invalid UIDs.
NAMESPACE = uuid.UUID("5b0d8d54-5a44-4c1e-9d4b-6f1f3c1c7a21")


def valid_uid(value: str) -> bool:
    """Whether ``value`` is a UID that a receiver accepts (digits and dots, at most 64 characters)."""
    return len(value) <= MAX_UID_LENGTH and UID_PATTERN.match(value) is not None


def mapped_uid(value: str) -> str:
    """The ``2.25.`` UID that replaces the invalid UID ``value`` (always the same for the same value)."""
    return f"2.25.{uuid.uuid5(NAMESPACE, value).int}"


def remap_uids(ds: Dataset) -> int:
    """Replace every invalid UID of ``ds`` (nested sequences and file meta included), in place.

    A missing SOP Class UID is filled in from the file meta (Media Storage SOP Class UID) and the
    other way round; the meta's Media Storage SOP Instance UID follows the data set's.

    Returns
    -------
    int
        How many values were replaced.
    """
    replaced = 0

    def visit(dataset: Dataset, element: DataElement) -> None:
        nonlocal replaced
        if element.VR != "UI" or element.value in (None, ""):
            return
        values = element.value if element.VM > 1 else [element.value]
        new = [str(v) if valid_uid(str(v)) else mapped_uid(str(v)) for v in values]
        if new != [str(v) for v in values]:
            replaced += sum(a != str(b) for a, b in zip(new, values, strict=True))
            element.value = new if element.VM > 1 else new[0]

    ds.walk(visit)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        meta.walk(visit)
        if "SOPClassUID" not in ds and "MediaStorageSOPClassUID" in meta:
            ds.SOPClassUID = meta.MediaStorageSOPClassUID
        if "MediaStorageSOPClassUID" not in meta and "SOPClassUID" in ds:
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return replaced
