"""Build the DICOM objects that carry a series result to the PACS: Enhanced SR, key objects, heat map.

The structured report is a TID 1500 Measurement Report in the source study (same Study Instance
UID, a new series): one measurement group per class (``any`` and the five subtypes) with the finding
code, the probability, Present/Absent at the admin threshold, the algorithm (TID 4019) and the key
slice it was read from. The content is described in docs/alerts.md. UIDs derive from the outbox
row's idempotency key, so a resent report is the same SOP instance (the PACS stores it once).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from triage import __version__
from triage.domain import CLASSES

LOGGER = logging.getLogger(__name__)

MANUFACTURER = "triage"
ALGORITHM_NAME = "triage ICH two-stage ResNet-50"
PRIVATE_SCHEME = "99TRIAGE"
SR_SERIES_NUMBER, KO_SERIES_NUMBER, SC_SERIES_NUMBER = 990, 991, 992

#: Finding codes. SNOMED CT where a code was verified, the private scheme 99TRIAGE otherwise.
FINDING_CODES: Mapping[str, hd.sr.CodedConcept] = {
    "any": hd.sr.CodedConcept("1386000", "SCT", "Intracranial hemorrhage"),
    "epidural": hd.sr.CodedConcept("EPIDURAL", PRIVATE_SCHEME, "Epidural hemorrhage"),
    "intraparenchymal": hd.sr.CodedConcept("274100004", "SCT", "Cerebral hemorrhage"),
    "intraventricular": hd.sr.CodedConcept("INTRAVENTRICULAR", PRIVATE_SCHEME, "Intraventricular hemorrhage"),
    "subarachnoid": hd.sr.CodedConcept("21454007", "SCT", "Subarachnoid intracranial hemorrhage"),
    "subdural": hd.sr.CodedConcept("35486000", "SCT", "Subdural intracranial hemorrhage"),
}
PROBABILITY = hd.sr.CodedConcept("122157", "DCM", "Probability")
NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
CT_OF_HEAD = hd.sr.CodedConcept("303653007", "SCT", "Computed tomography of head")


@dataclass(frozen=True)
class ReportInputs:
    """What the report is built from: the result payload and the source headers it references."""

    payload: Mapping[str, Any]
    evidence: Mapping[str, Dataset]  # SOP Instance UID -> header of a stored source slice
    class_slices: Mapping[str, str]  # class -> SOP Instance UID of its key slice
    heatmaps: Sequence[tuple[str, np.ndarray]] = ()  # (source SOP Instance UID, RGB uint8 image)


def derived_uid(key: str, role: str) -> str:
    """A UID that is the same every time for the same outbox row and role (``2.25`` + hash)."""
    return str(generate_uid(prefix=None, entropy_srcs=[key, role]))


def _device(key: str, version: str) -> hd.sr.ObserverContext:
    return hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid(f"triage-device:{version}", "device"),
            name="triage",
            manufacturer_name=MANUFACTURER,
            model_name=version[:64] or "unknown",
        ),
    )


def _group(name: str, inputs: ReportInputs, algorithm: hd.sr.AlgorithmIdentification
           ) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    payload = inputs.payload
    key = str(payload["idempotency_key"])
    code = FINDING_CODES[name]
    flagged = name in payload.get("flagged_classes", [])
    slice_uid = inputs.class_slices.get(name)
    source = inputs.evidence.get(slice_uid) if slice_uid else None
    images = None
    if source is not None:
        images = [hd.sr.SourceImageForMeasurementGroup(source.SOPClassUID, source.SOPInstanceUID)]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=derived_uid(key, f"group:{name}"),
                                                     identifier=f"ICH triage: {name}"),
        finding_type=code,
        algorithm_id=algorithm,
        measurements=[hd.sr.Measurement(name=PROBABILITY, value=float(payload["probabilities"][name]),
                                        unit=NO_UNITS)],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(code, codes.SCT.Present if flagged
                                                             else codes.SCT.Absent)],
        source_images=images,
    )


def build_sr(inputs: ReportInputs, now: dt.datetime | None = None) -> hd.sr.EnhancedSR:
    """The Enhanced SR (TID 1500) of one series result.

    Raises
    ------
    ValueError
        When no source slice header is available (the report must name its study and evidence).
    """
    payload = inputs.payload
    if not inputs.evidence:
        raise ValueError(f"no stored source instance of series {payload['series_uid']!r} to reference")
    key = str(payload["idempotency_key"])
    version = str(payload.get("model_version") or "unknown")
    algorithm = hd.sr.AlgorithmIdentification(name=ALGORITHM_NAME, version=version[:64])
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=_device(key, version)),
        procedure_reported=CT_OF_HEAD,
        imaging_measurements=[_group(name, inputs, algorithm) for name in CLASSES],
    )
    now = now or dt.datetime.now(dt.UTC)
    return hd.sr.EnhancedSR(
        evidence=list(inputs.evidence.values()),
        content=report,
        series_instance_uid=derived_uid(key, "sr-series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=derived_uid(key, "sr"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description="AI ICH triage result",
        manufacturer_model_name=ALGORITHM_NAME,
        software_versions=f"triage {__version__}; model {version}"[:64],
        coding_schemes=[hd.coding_schemes.CodingSchemeIdentificationItem(
            designator=PRIVATE_SCHEME, name="triage private codes",
            responsible_organization="triage project")],
        content_date=now.date(),
        content_time=now.time().replace(tzinfo=None),
    )


def build_key_objects(inputs: ReportInputs) -> hd.ko.KeyObjectSelectionDocument:
    """A Key Object Selection ("Of Interest") of the key slices, in the source study."""
    payload = inputs.payload
    key = str(payload["idempotency_key"])
    version = str(payload.get("model_version") or "unknown")
    referenced = [inputs.evidence[uid] for uid in dict.fromkeys(inputs.class_slices.values())
                  if uid in inputs.evidence] or list(inputs.evidence.values())
    content = hd.ko.KeyObjectSelection(
        document_title=codes.DCM.OfInterest,
        referenced_objects=referenced,
        observer_device_context=_device(key, version),
        description="AI ICH triage: key slices",
    )
    return hd.ko.KeyObjectSelectionDocument(
        evidence=referenced,
        content=content,
        series_instance_uid=derived_uid(key, "ko-series"),
        series_number=KO_SERIES_NUMBER,
        sop_instance_uid=derived_uid(key, "ko"),
        instance_number=1,
        manufacturer=MANUFACTURER,
    )


def build_heatmaps(inputs: ReportInputs) -> list[hd.sc.SCImage]:
    """Secondary-capture images of the heat-map PNGs, one per key image, in one new series."""
    key = str(inputs.payload["idempotency_key"])
    images = []
    for number, (source_uid, pixels) in enumerate(inputs.heatmaps, start=1):
        source = inputs.evidence.get(source_uid)
        if source is None:
            continue
        image = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source,
            pixel_array=np.ascontiguousarray(pixels, dtype=np.uint8),
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            series_instance_uid=derived_uid(key, "sc-series"),
            series_number=SC_SERIES_NUMBER,
            sop_instance_uid=derived_uid(key, f"sc:{source_uid}"),
            instance_number=number,
            manufacturer=MANUFACTURER,
            patient_orientation=("L", "P"),
            transfer_syntax_uid="1.2.840.10008.1.2.1",
        )
        image.SeriesDescription = "AI ICH triage heat map"
        image.BurnedInAnnotation = "NO"
        image.DerivationDescription = "Source slice, windowed, with the classifier's activation heat map"
        reference = Dataset()
        reference.ReferencedSOPClassUID = source.SOPClassUID
        reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
        image.SourceImageSequence = [reference]
        if source.get("BodyPartExamined"):
            image.BodyPartExamined = source.BodyPartExamined  # tells validators the part is unpaired
        images.append(image)
    return images


def build_report_datasets(inputs: ReportInputs, *, key_objects: bool, secondary_capture: bool,
                          now: dt.datetime | None = None) -> list[Dataset]:
    """The SR, then (when asked) the key object selection and the heat-map images."""
    datasets: list[Dataset] = [build_sr(inputs, now)]
    if key_objects:
        datasets.append(build_key_objects(inputs))
    if secondary_capture:
        datasets.extend(build_heatmaps(inputs))
    return datasets
