"""Fixtures of the alert tests: studies with results made directly in the database, real receivers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from sqlalchemy import select

from tests.alerts.receivers import MailSink, Orthanc, Storescp, WebhookReceiver, start_smtp
from triage.config import Settings
from triage.db.engine import transaction
from triage.db.models import Alert, Instance, Series, SeriesResult, SlicePrediction, Study, utcnow
from triage.db.outbox import enqueue_alerts
from triage.domain import CLASSES

SECRET = "s3cret-key"


def ct_slice(study_uid: str, series_uid: str, index: int, accession: str) -> Dataset:
    """A minimal but valid 32x32 CT image (what the store would hold)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study_uid, "for"])
    ds.PatientID = "PID-0042"
    ds.PatientName = "Doe^Jane"
    ds.PatientBirthDate = "19500101"
    ds.PatientSex = "F"
    ds.AccessionNumber = accession
    ds.StudyID = "1"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.ReferringPhysicianName = ""
    ds.Modality = "CT"
    ds.BodyPartExamined = "HEAD"
    ds.Manufacturer = "test"
    ds.SeriesNumber = 2
    ds.InstanceNumber = index + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [-8.0, -8.0, 5.0 * index]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 5.0
    ds.KVP = 120
    ds.Rows = ds.Columns = 32
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.PixelData = np.full((32, 32), 1064, dtype=np.int16).tobytes()
    return ds


@dataclass
class Case:
    """A study with one series, its stored slices and a result, made like the worker would."""

    study_id: int
    series_id: int
    study_uid: str
    series_uid: str
    sop_uids: list[str]
    accession: str


def probabilities_for(flagged: Sequence[str], high: float = 0.9, low: float = 0.1) -> dict[str, float]:
    """Study-level probabilities that flag exactly ``flagged`` at a 0.5 threshold."""
    probs = {name: (high if name in flagged else low) for name in CLASSES}
    if any(name != "any" for name in flagged):
        probs["any"] = max(probs["any"], high)
    return probs


def add_case(factory, settings: Settings, *, flagged: Sequence[str] = ("any", "subdural"), slices: int = 4,
             provisional: bool = False, model_version: str = "m1", accession: str = "ACC-1001",
             received_at: dt.datetime | None = None, enqueue: bool = True,
             datasets: Sequence[Dataset] | None = None, same_study_as: Case | None = None) -> Case:
    """Write slices under the store and rows for a study, its series, instances, predictions, result.

    ``datasets`` (e.g. a ``triage.synth`` phantom) replace the minimal generated slices;
    ``same_study_as`` adds a new series to that case's study.
    """
    if datasets:
        study_uid, series_uid = datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID
        accession, slices = datasets[0].AccessionNumber, len(datasets)
    else:
        study_uid, series_uid = str(generate_uid()), str(generate_uid())
    if same_study_as is not None:
        study_uid, accession = same_study_as.study_uid, same_study_as.accession
    received = received_at or utcnow()
    store = settings.store
    sop_uids = []
    with transaction(factory) as session:
        if same_study_as is not None:
            study = session.get(Study, same_study_as.study_id)
        else:
            study = Study(study_uid=study_uid, patient_id="PID-0042", patient_name="Doe^Jane",
                          accession_number=accession, study_description="CT HEAD WO CONTRAST",
                          first_received_at=received, last_received_at=received)
            session.add(study)
            session.flush()
        series = Series(study_id=study.id, series_uid=series_uid, series_number=2, state="classified",
                        num_instances=slices, first_received_at=received, last_received_at=received)
        session.add(series)
        session.flush()
        for index in range(slices):
            ds = datasets[index] if datasets else ct_slice(study_uid, series_uid, index, accession)
            relative = Path(study_uid) / series_uid / f"{ds.SOPInstanceUID}.dcm"
            path = store / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
            instance = Instance(series_id=series.id, sop_instance_uid=ds.SOPInstanceUID, sop_class_uid=ds.SOPClassUID,
                                transfer_syntax_uid=ds.file_meta.TransferSyntaxUID, path=relative.as_posix(),
                                size_bytes=path.stat().st_size, instance_number=index + 1, z_position=5.0 * index,
                                received_at=received)
            session.add(instance)
            session.flush()
            sop_uids.append(ds.SOPInstanceUID)
            # slice i is the key slice of class i (so each class points at its own slice when slices >= 6)
            peak = CLASSES[index] if index < len(CLASSES) else None
            probs = {name: 0.05 for name in CLASSES}
            for name in flagged:
                probs[name] = 0.6
            if peak is not None:
                probs[peak] += 0.2
            session.add(SlicePrediction(instance_id=instance.id, series_id=series.id, model_version=model_version,
                                        **{f"p_{k}": v for k, v in probs.items()}))
        case = Case(study.id, series.id, study_uid, series_uid, sop_uids, accession)
    set_result(factory, settings, case, flagged=flagged, provisional=provisional, model_version=model_version,
               enqueue=enqueue)
    return case


def set_result(factory, settings: Settings, case: Case, *, flagged: Sequence[str], provisional: bool = False,
               model_version: str = "m1", enqueue: bool = True) -> list[Alert]:
    """Replace the series result and add the outbox rows, in one transaction (what the worker does)."""
    with transaction(factory) as session:
        return write_result(session, settings, case, flagged=flagged, provisional=provisional,
                            model_version=model_version, enqueue=enqueue)


def write_result(session, settings: Settings, case: Case, *, flagged: Sequence[str], provisional: bool = False,
                 model_version: str = "m1", enqueue: bool = True) -> list[Alert]:
    """:func:`set_result` inside the caller's transaction."""
    probs = probabilities_for(flagged)
    result = session.scalar(select(SeriesResult).where(SeriesResult.series_id == case.series_id))
    if result is None:
        result = SeriesResult(series_id=case.series_id)
        session.add(result)
    for name, p in probs.items():
        setattr(result, f"p_{name}", p)
    result.model_version = model_version
    result.flagged = bool(flagged)
    result.flagged_classes = list(flagged)
    result.priority = "critical" if flagged else "routine"
    result.score = probs["any"]
    result.key_instance_uid = case.sop_uids[0]
    result.provisional = provisional
    result.num_slices = len(case.sop_uids)
    result.created_at = utcnow()
    session.flush()
    study = session.get(Study, case.study_id)
    results = session.scalars(select(SeriesResult).join(Series).where(Series.study_id == study.id)).all()
    study.flagged = any(r.flagged for r in results)
    study.priority = "critical" if study.flagged else "routine"
    study.score = max(r.score for r in results)
    if not provisional:
        study.classified_at = utcnow()
    series = session.get(Series, case.series_id)
    if not enqueue:
        return []
    added = enqueue_alerts(session, settings, study, series, result)
    return [session.get(Alert, a.id) for a in added]


def rows(factory, **where) -> list[Alert]:
    """Outbox rows, oldest first, filtered by column values."""
    with factory() as session:
        query = select(Alert).order_by(Alert.id)
        for key, value in where.items():
            query = query.where(getattr(Alert, key) == value)
        return list(session.scalars(query))


def outbox(factory) -> list[tuple[str, str, str, int, str | None]]:
    """(channel, kind, state, attempts, last_error) of every row: the message of a failed assertion."""
    return [(a.channel, a.kind, a.state, a.attempts, a.last_error) for a in rows(factory)]


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def mail() -> Iterator[MailSink]:
    sink = MailSink()
    controller = start_smtp(sink)
    sink.port = controller.port  # type: ignore[attr-defined]
    yield sink
    controller.stop()


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[Storescp]:
    server = Storescp(tmp_path / "storescp" / "in")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """One Orthanc for a test module (it takes seconds to stop); tests compare instance lists."""
    server = Orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


@pytest.fixture
def alert_settings(settings: Settings) -> Settings:
    """The test settings with no channel configured and fast retries (tests switch channels on)."""
    settings.store.mkdir(parents=True, exist_ok=True)
    settings.web.base_url = "https://triage.example.org"
    settings.alerts.backoff_seconds = 1.0
    settings.alerts.max_backoff_seconds = 8.0
    settings.alerts.max_attempts = 4
    return settings


def use_webhook(settings: Settings, receiver: WebhookReceiver) -> None:
    settings.alerts.webhook.url = receiver.url
    settings.alerts.webhook.secret = SECRET
    settings.alerts.webhook.timeout_seconds = 2.0


def use_mail(settings: Settings, sink: MailSink, **extra: object) -> None:
    smtp = settings.alerts.smtp
    smtp.host = "127.0.0.1"
    smtp.port = sink.port  # type: ignore[attr-defined]
    smtp.sender = "triage@example.org"
    smtp.recipients = ["oncall@example.org", "neuro@example.org"]
    smtp.timeout_seconds = 15.0
    for key, value in extra.items():
        setattr(smtp, key, value)


def use_dicom(settings: Settings, ae_title: str, port: int) -> None:
    settings.alerts.dicom.ae_title = ae_title
    settings.alerts.dicom.host = "127.0.0.1"
    settings.alerts.dicom.port = port
    settings.alerts.dicom.timeout_seconds = 10.0
