"""Fixtures of the worker tests: a small untrained model, phantom studies stored through the real ingest path."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pytest
from pydicom import Dataset

from triage.config import Settings
from triage.db.engine import transaction
from triage.db.models import Threshold
from triage.dicom.commit import GroupCommitter
from triage.dicom.receiver import Receiver
from triage.dicom.store import DicomStore
from triage.model import Classifier
from triage.synth.study import make_study
from triage.worker.jobs import WorkerContext
from triage.worker.pipeline import Pipeline


@pytest.fixture(scope="session")
def classifier(model_dir: Path) -> Classifier:
    return Classifier(model_dir, device="cpu", batch_size=8)


def encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def store_datasets(settings: Settings, factory, datasets: Sequence[Dataset]) -> list[int]:
    """Store datasets through the DICOM receiver (as a C-STORE would); returns the statuses."""
    store = DicomStore(settings.store)
    store.prepare()
    receiver = Receiver(store, GroupCommitter(factory, enabled=False), settings.series)
    return [
        receiver.receive(
            encode(ds),
            sop_class_uid=ds.SOPClassUID,
            sop_instance_uid=ds.SOPInstanceUID,
            transfer_syntax_uid=ds.file_meta.TransferSyntaxUID,
            calling_aet="TESTSCANNER",
        )
        for ds in datasets
    ]


def set_thresholds(factory, value: float) -> None:
    """All thresholds to ``value`` (0 flags everything, above 1 flags nothing)."""
    with transaction(factory) as s:
        for row in s.query(Threshold):
            row.threshold = value


@pytest.fixture
def worker_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"batch_size": 8, "lease_seconds": 30})}
    )


@pytest.fixture
def ctx(worker_settings: Settings, factory, classifier: Classifier):
    from triage.db.thresholds import seed_thresholds

    seed_thresholds(factory, worker_settings.thresholds.model_dump())
    pipeline = Pipeline(worker_settings, factory, classifier)
    context = WorkerContext(worker_settings, factory, "test-worker", pipeline=pipeline)
    yield context
    pipeline.close()


@pytest.fixture(scope="session")
def phantom():
    """A 12-slice positive phantom (subdural + intraparenchymal)."""
    return make_study(7, slices=12, subtypes=("subdural", "intraparenchymal"))
