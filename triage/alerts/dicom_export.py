"""The DICOM channel: gather a result's source slices, build the report objects, C-STORE them to the PACS."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from triage.alerts.channels import DeliveryError
from triage.alerts.report import ReportInputs, build_report_datasets
from triage.config import Settings
from triage.db.models import Instance, KeyImage, Series, SlicePrediction
from triage.db.outbox import Claim
from triage.dicom.requestor import request_association
from triage.domain import CLASSES

LOGGER = logging.getLogger(__name__)

#: C-STORE statuses after which the PACS holds the object (success and the storage warnings).
STORED = frozenset({0x0000, 0xB000, 0xB006, 0xB007})


def stored_path(store: Path, relative: str) -> Path:
    """``relative`` under the DICOM store, refusing anything that would leave it."""
    root = store.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise DeliveryError(f"stored path {relative!r} is outside the store {str(root)!r}")
    return path


def class_key_slices(session: Session, series_id: int, version: str) -> dict[str, str]:
    """Per class, the SOP Instance UID of the slice with the highest probability for ``version``."""
    columns = [getattr(SlicePrediction, f"p_{name}") for name in CLASSES]
    rows = session.execute(
        select(Instance.sop_instance_uid, *columns)
        .join(Instance, Instance.id == SlicePrediction.instance_id)
        .where(SlicePrediction.series_id == series_id, SlicePrediction.model_version == version)
    ).all()
    if not rows:
        return {}
    values = np.array([row[1:] for row in rows], dtype=np.float64)
    best = values.argmax(axis=0)
    return {name: rows[int(index)][0] for name, index in zip(CLASSES, best, strict=True)}


def _read_header(path: Path) -> Dataset | None:
    try:
        return dcmread(path, stop_before_pixels=True)
    except (OSError, InvalidDicomError) as exc:
        LOGGER.warning("report: cannot read source file %s (%s)", path.name, type(exc).__name__)
        return None


def gather_inputs(session: Session, settings: Settings, payload: dict[str, Any]) -> ReportInputs:
    """Read what the report references: key slices per class, the key instance, heat maps."""
    series = session.scalar(select(Series).where(Series.series_uid == payload["series_uid"]))
    if series is None:
        raise DeliveryError(f"series {payload['series_uid']!r} is no longer in the database")
    slices = class_key_slices(session, series.id, str(payload.get("model_version", "")))
    key_uid = payload.get("key_instance_uid")
    if key_uid:
        slices.setdefault("any", key_uid)
        for name in CLASSES:
            slices.setdefault(name, key_uid)
    key_images = []
    if settings.alerts.dicom.secondary_capture:
        key_images = list(session.scalars(select(KeyImage).where(KeyImage.series_id == series.id)
                                          .order_by(KeyImage.id)))
    wanted = set(slices.values()) | {image.sop_instance_uid for image in key_images}
    instances = session.scalars(select(Instance).where(Instance.series_id == series.id,
                                                       Instance.sop_instance_uid.in_(wanted))).all()
    evidence = {}
    for instance in instances:
        header = _read_header(stored_path(settings.store, instance.path))
        if header is not None:
            evidence[instance.sop_instance_uid] = header
    heatmaps = []
    for image in key_images:
        try:
            with Image.open(stored_path(settings.store, image.path)) as png:
                heatmaps.append((image.sop_instance_uid, np.asarray(png.convert("RGB"))))
        except OSError as exc:
            LOGGER.warning("report: cannot read heat map %s (%s)", Path(image.path).name, type(exc).__name__)
    return ReportInputs(payload=payload, evidence=evidence,
                        class_slices={k: v for k, v in slices.items() if v in evidence}, heatmaps=heatmaps)


def c_store(settings: Settings, datasets: Sequence[Dataset]) -> None:
    """Send ``datasets`` in one association to ``alerts.dicom`` (calling AE: our own AE title).

    Raises
    ------
    DeliveryError
        When the association is refused or aborted, or an object is not stored.
    """
    config = settings.alerts.dicom
    ae = AE(ae_title=settings.dicom.ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = config.timeout_seconds
    ae.connection_timeout = config.timeout_seconds
    for sop_class in dict.fromkeys(str(ds.SOPClassUID) for ds in datasets):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc, failure = request_association(ae, config.host, config.port, config.ae_title)
    if failure is not None:
        raise DeliveryError(f"association with {config.ae_title}@{config.host}:{config.port} {failure}")
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = int(status.Status) if status and "Status" in status else None
            if code not in STORED:
                shown = "no answer" if code is None else f"0x{code:04X}"
                raise DeliveryError(f"C-STORE of {ds.SOPClassUID.name} to {config.ae_title} failed: {shown}")
    finally:
        if assoc.is_established:
            assoc.release()


def send_report(settings: Settings, factory: sessionmaker[Session], claim: Claim) -> dict[str, object]:
    """Build the report objects of ``claim`` and store them in the PACS."""
    with factory() as session:
        inputs = gather_inputs(session, settings, claim.payload)
    config = settings.alerts.dicom
    try:
        datasets = build_report_datasets(inputs, key_objects=config.key_objects,
                                         secondary_capture=config.secondary_capture)
    except ValueError as exc:
        raise DeliveryError(f"cannot build the report: {exc}") from exc
    c_store(settings, datasets)
    return {"sr_sop_instance_uid": str(datasets[0].SOPInstanceUID), "objects": len(datasets)}
