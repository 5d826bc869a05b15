"""Rows the other parts write (studies, series, results, slices, key images, alerts), inserted directly."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy.orm import Session

from triage.db.models import (
    Alert,
    Instance,
    KeyImage,
    Series,
    SeriesResult,
    SlicePrediction,
    Study,
    Threshold,
    User,
    utcnow,
)
from triage.domain import CLASSES, apply_thresholds
from triage.web.users import hash_password

_counter = itertools.count(1)
PASSWORD = "correct horse battery"
#: One scrypt hash for every test user (hashing costs ~0.1 s; logging in still verifies it for real).
_HASH = hash_password(PASSWORD)


def uid(prefix: str = "1.2.826.0.1.3680043.10.543") -> str:
    """A fresh valid UID."""
    return f"{prefix}.{next(_counter)}"


def user(session: Session, name: str, role: str = "radiologist", *, disabled: bool = False) -> User:
    """A user whose password is :data:`PASSWORD`."""
    row = User(username=name, role=role, password_hash=_HASH, disabled=disabled)
    session.add(row)
    session.flush()
    return row


def probabilities(any_: float = 0.0, **subtypes: float) -> dict[str, float]:
    """Six probabilities: ``any`` and the subtypes given (others 0)."""
    out = {name: 0.0 for name in CLASSES}
    out["any"] = any_
    out.update(subtypes)
    return out


def study(session: Session, *, minutes_ago: float = 10, accession: str | None = None, patient_id: str = "P-1",
          patient_name: str = "DOE^JANE", description: str = "CT HEAD WO CONTRAST",
          study_uid: str | None = None) -> Study:
    """A study received ``minutes_ago`` minutes ago, with no series yet."""
    received = utcnow() - dt.timedelta(minutes=minutes_ago)
    row = Study(
        study_uid=study_uid or uid(), accession_number=accession or f"ACC{next(_counter):05d}",
        patient_id=patient_id, patient_name=patient_name, study_description=description,
        first_received_at=received, last_received_at=received + dt.timedelta(seconds=20),
    )
    session.add(row)
    session.flush()
    return row


def series(session: Session, parent: Study, *, state: str = "classified", reason: str | None = None,
           num_instances: int = 0, description: str = "AXIAL 5mm", number: int = 2) -> Series:
    """A series of ``parent`` in ``state`` with plausible per-stage times."""
    start = parent.first_received_at
    done = state == "classified"
    row = Series(
        study_id=parent.id, series_uid=uid(), series_number=number, series_description=description,
        state=state, state_reason=reason, num_instances=num_instances,
        first_received_at=start, last_received_at=start + dt.timedelta(seconds=20),
        ready_at=start + dt.timedelta(seconds=30) if state not in ("receiving",) else None,
        processing_started_at=start + dt.timedelta(seconds=31) if state in ("processing", "classified", "failed")
        else None,
        classified_at=start + dt.timedelta(seconds=45) if done else None,
    )
    session.add(row)
    session.flush()
    return row


def result(session: Session, parent: Series, probs: Mapping[str, float], *, thresholds: float = 0.5,
           key_instance_uid: str | None = None, model_version: str = "ich-test-1", provisional: bool = False,
           error: str | None = None) -> SeriesResult:
    """A series result; the study's summary columns are refreshed as the worker does."""
    flagged = apply_thresholds(probs, {name: thresholds for name in CLASSES})
    row = SeriesResult(
        series_id=parent.id, model_version=model_version, flagged=bool(flagged), flagged_classes=list(flagged),
        priority="critical" if flagged else "routine", score=max(probs.values()), key_instance_uid=key_instance_uid,
        provisional=provisional, num_slices=parent.num_instances, error=error,
        timings={"decode": 0.4, "stage1": 2.1, "stage2": 0.3},
        **{f"p_{name}": float(probs.get(name, 0.0)) for name in CLASSES},
    )
    session.add(row)
    session.flush()
    owner = session.get(Study, parent.study_id)
    assert owner is not None
    owner.flagged = owner.flagged or bool(flagged)
    owner.score = max(owner.score or 0.0, row.score)
    owner.priority = "critical" if owner.flagged else "routine"
    owner.classified_at = parent.classified_at or utcnow()
    return row


def slices(session: Session, parent: Series, n: int, peak: Mapping[str, float], *, center: float = 0.6,
           model_version: str = "ich-test-1", spacing: float = 5.0) -> list[Instance]:
    """``n`` instances with z positions and slice predictions: a bump around ``center`` of the range."""
    out = []
    for i in range(n):
        inst = Instance(
            series_id=parent.id, sop_instance_uid=uid(), sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
            path=f"dicom/{parent.series_uid}/{i}.dcm", size_bytes=1000, instance_number=i + 1,
            z_position=-60.0 + i * spacing,
        )
        session.add(inst)
        out.append(inst)
    session.flush()
    for i, inst in enumerate(out):
        weight = math.exp(-((i / max(n - 1, 1) - center) ** 2) / 0.01)
        probs = {name: round(min(1.0, 0.02 + peak.get(name, 0.0) * weight), 4) for name in CLASSES}
        session.add(SlicePrediction(instance_id=inst.id, series_id=parent.id, model_version=model_version,
                                    **{f"p_{name}": probs[name] for name in CLASSES}))
    parent.num_instances = n
    session.flush()
    return out


def classified(session: Session, probs: Mapping[str, float], *, n_slices: int = 0, minutes_ago: float = 10,
               **study_args: object) -> Study:
    """A study with one classified series and its result (and ``n_slices`` slice predictions)."""
    parent = study(session, minutes_ago=minutes_ago, **study_args)  # type: ignore[arg-type]
    child = series(session, parent, num_instances=n_slices)
    key = None
    if n_slices:
        instances = slices(session, child, n_slices, probs)
        key = instances[int(0.6 * (n_slices - 1))].sop_instance_uid
    result(session, child, probs, key_instance_uid=key)
    return parent


def key_image(session: Session, store: Path, parent: Series, sop_instance_uid: str, *, size: int = 256) -> KeyImage:
    """A PNG like the worker's (a phantom head with a red-yellow blob) and its row."""
    relative = f"keyimages/{parent.series_uid}/{sop_instance_uid}.png"
    target = store / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(phantom_png(size))
    row = KeyImage(series_id=parent.id, sop_instance_uid=sop_instance_uid, path=relative, kind="heatmap")
    session.add(row)
    session.flush()
    return row


def phantom_png(size: int = 256) -> bytes:
    """A brain-windowed looking axial slice with a subdural crescent and a heat map over it."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1) * 2 - 1
    head = np.hypot(x / 0.78, y / 0.92)
    brain = head < 0.93
    grey = np.where(brain, 0.42 + 0.05 * np.cos(9 * x + 3 * y) * np.cos(7 * y), 0.0)
    grey = np.where(brain & (np.hypot(x / 0.55, y / 0.72) > 1.0), grey + 0.08, grey)  # cortex
    grey = np.where((head >= 0.93) & (head < 1.0), 0.97, grey)  # skull
    for cx in (-0.09, 0.09):  # lateral ventricles
        grey = np.where(np.hypot((x - cx) / 0.07, (y + 0.05) / 0.26) < 1, 0.12, grey)
    crescent = brain & (np.hypot((x - 0.2) / 0.72, y / 0.86) > 0.93) & (x > 0.1) & (np.abs(y) < 0.6)
    grey = np.where(crescent, 0.78, grey)
    heat = np.exp(-(((x - 0.6) / 0.2) ** 2 + (y / 0.5) ** 2))
    alpha = np.clip((heat - 0.25) / 0.75, 0, 1)[..., None] * 0.6
    colour = np.stack([0.85 + 0.15 * heat, 0.1 + 0.85 * heat, 0.05 + 0.2 * heat], axis=-1)
    rgb = grey[..., None] * (1 - alpha) + colour * alpha
    buffer = io.BytesIO()
    Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def thresholds(session: Session, values: Mapping[str, float] | None = None,
               enabled: Sequence[str] | None = None) -> None:
    """Threshold rows for every class (0.5 unless given); ``enabled`` lists the classes that alert."""
    for name in CLASSES:
        session.merge(Threshold(class_name=name, threshold=(values or {}).get(name, 0.5),
                                alert_enabled=enabled is None or name in enabled))
    session.flush()


def alert(session: Session, parent: Study, *, state: str = "pending", channel: str = "webhook",
          error: str | None = None) -> Alert:
    """An outbox row."""
    row = Alert(study_id=parent.id, channel=channel, idempotency_key=uid("key"), payload={"study": parent.study_uid},
                state=state, attempts=8 if state == "dead" else 0, last_error=error)
    session.add(row)
    session.flush()
    return row
