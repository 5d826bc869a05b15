"""The worker's writes: slice predictions, series results, the study summary and the outbox rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from triage.config import Settings
from triage.db.engine import dialect_insert
from triage.db.models import Instance, Series, SeriesResult, SlicePrediction, Study, utcnow
from triage.db.outbox import enqueue_alerts
from triage.domain import CLASSES, Findings, SeriesState
from triage.worker.aggregate import score

COLUMNS = tuple(f"p_{name}" for name in CLASSES)


def insert_predictions(
    session: Session, series_id: int, version: str, predictions: Mapping[int, np.ndarray]
) -> None:
    """Store per-slice probabilities (instance id -> 6 values); rows that already exist are kept."""
    if not predictions:
        return
    now = utcnow()
    rows = [
        {"instance_id": iid, "series_id": series_id, "model_version": version, "created_at": now}
        | {col: float(p) for col, p in zip(COLUMNS, probs, strict=True)}
        for iid, probs in predictions.items()
    ]
    insert = dialect_insert(session)
    statement = insert(SlicePrediction).on_conflict_do_nothing(index_elements=["instance_id", "model_version"])
    session.execute(statement, rows)


def load_predictions(session: Session, series_id: int, version: str) -> dict[int, np.ndarray]:
    """The stored probabilities of a series for one model version, by instance id."""
    rows = session.execute(
        select(SlicePrediction.instance_id, *(getattr(SlicePrediction, c) for c in COLUMNS)).where(
            SlicePrediction.series_id == series_id, SlicePrediction.model_version == version
        )
    )
    return {row[0]: np.array(row[1:], dtype=np.float32) for row in rows}


def drop_other_versions(session: Session, series_id: int, version: str) -> None:
    """Reprocessing with a new model replaces what older versions predicted for the series."""
    session.execute(
        delete(SlicePrediction).where(
            SlicePrediction.series_id == series_id, SlicePrediction.model_version != version
        )
    )


def write_result(
    session: Session,
    settings: Settings,
    series: Series,
    findings: Findings,
    *,
    version: str,
    provisional: bool,
    num_slices: int,
    num_undecodable: int = 0,
    timings: Mapping[str, float] | None = None,
    error: str | None = None,
) -> SeriesResult:
    """Replace the series' result, refresh the study summary and add the outbox rows, in ``session``."""
    result = session.scalar(select(SeriesResult).where(SeriesResult.series_id == series.id))
    if result is None:
        result = SeriesResult(series_id=series.id)
        session.add(result)
    for name, col in zip(CLASSES, COLUMNS, strict=True):
        setattr(result, col, float(findings.probabilities[name]))
    result.model_version = version
    result.flagged = findings.flagged
    result.flagged_classes = list(findings.flagged_classes)
    result.priority = findings.priority.value
    result.score = score(findings)
    result.key_instance_uid = findings.key_instance_uid
    result.provisional = provisional
    result.num_slices = num_slices
    result.num_undecodable = num_undecodable
    result.timings = dict(timings or {})
    result.error = error
    result.created_at = utcnow()
    session.flush()
    study = session.get(Study, series.study_id)
    assert study is not None  # noqa: S101 - foreign key
    refresh_study_summary(session, study)
    enqueue_alerts(session, settings, study, series, result)
    return result


def refresh_study_summary(session: Session, study: Study) -> None:
    """The study's flagged/priority/score columns from all its series results."""
    results = session.scalars(
        select(SeriesResult).join(Series).where(Series.study_id == study.id)
    ).all()
    study.flagged = any(r.flagged for r in results)
    study.score = max((r.score for r in results), default=0.0)
    study.priority = "critical" if study.flagged else "routine"
    if any(not r.provisional for r in results):
        study.classified_at = utcnow()


def finish(session: Session, series: Series, processed: Iterable[int], now: dt.datetime) -> SeriesState:
    """Close a processed series: ``classified``, or back to ``receiving`` when slices came in meanwhile."""
    from triage.db.queue import set_state

    processed_ids = set(processed)
    count = session.scalar(select(func.count()).select_from(Instance).where(Instance.series_id == series.id))
    series.processed_instances = len(processed_ids)
    if (count or 0) > len(processed_ids):
        set_state(series, SeriesState.RECEIVING, None)
        return SeriesState.RECEIVING
    set_state(series, SeriesState.CLASSIFIED)
    series.classified_at = now
    return SeriesState.CLASSIFIED
