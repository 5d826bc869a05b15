"""The classify pipeline: the only place where the model and the database meet.

Slices are decoded and preprocessed in a thread pool while the model runs on the previous batch;
stage 1 runs on every slice, stage 2 only on the slices stage 1 calls positive. Predictions are stored
per slice, so the final pass over a completed series only classifies what streaming has not already done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Select, and_, delete, select
from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings
from triage.db.engine import transaction
from triage.db.models import Instance, KeyImage, Series, SlicePrediction, utcnow
from triage.db.queue import Claim, give_up, lock_claimed, renew_lease
from triage.db.thresholds import load_thresholds
from triage.domain import CLASSES, Findings, SeriesState
from triage.imaging import preprocess_file
from triage.model import Classifier, compose_probabilities
from triage.worker import metrics
from triage.worker.aggregate import SliceProbabilities, findings_for
from triage.worker.keyimages import key_image_path, pick_key_slices, render_key_image
from triage.worker.persist import (
    drop_other_versions,
    finish,
    insert_predictions,
    load_predictions,
    write_result,
)

LOGGER = logging.getLogger(__name__)


_BatchHook = Callable[[dict[int, np.ndarray]], None]
_Loaded = tuple[np.ndarray | None, str | None, float]  # model input or None, error, seconds


class Aborted(Exception):
    """The worker is stopping; the series goes back to the queue without counting an attempt."""


class LeaseLost(Exception):
    """Another worker took the series over (our lease expired); our results are discarded."""


@dataclass(frozen=True)
class SliceRef:
    """One stored slice to classify."""

    instance_id: int
    sop_instance_uid: str
    path: Path
    z: float | None
    number: int | None
    failed: bool = False


@dataclass
class Timings:
    """Seconds spent per stage (decode+preprocess is summed over pool threads)."""

    preprocess: float = 0.0
    stage1: float = 0.0
    stage2: float = 0.0
    database: float = 0.0
    slices: int = 0

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in vars(self).items()}


@dataclass
class Batch:
    """Predictions of a run over some slices, and the slices that could not be decoded."""

    predictions: dict[int, np.ndarray] = field(default_factory=dict)
    undecodable: dict[int, str] = field(default_factory=dict)
    timings: Timings = field(default_factory=Timings)


def order_slices(slices: Sequence[SliceRef]) -> list[SliceRef]:
    """Slices along z (stored projected position), instance number as the fallback, then arrival."""
    if slices and all(s.z is not None for s in slices):
        return sorted(slices, key=lambda s: (s.z, s.instance_id))
    return sorted(slices, key=lambda s: (s.number if s.number is not None else 1 << 30, s.instance_id))


class Pipeline:
    """Classifies series of one database with one loaded model. One caller at a time."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        classifier: Classifier,
        *,
        stopping: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.classifier = classifier
        self.stopping = stopping or threading.Event()
        self.pool = ThreadPoolExecutor(settings.worker.decode_threads, thread_name_prefix="triage-decode")

    def close(self) -> None:
        """Stop the decode threads."""
        self.pool.shutdown(wait=True, cancel_futures=True)

    # -- model ----------------------------------------------------------------------------------

    def _load(self, ref: SliceRef) -> _Loaded:
        started = time.perf_counter()
        try:
            array = preprocess_file(ref.path, self.classifier.image_size, self.classifier.windowing)
            return array, None, time.perf_counter() - started
        except Exception as exc:  # any decoding problem is recorded against the slice
            return None, f"{type(exc).__name__}: {exc}", time.perf_counter() - started

    def _preprocessed(self, refs: Sequence[SliceRef]) -> Iterator[tuple[SliceRef, _Loaded]]:
        ahead = max(2 * self.settings.worker.batch_size, 4)
        pending: deque[tuple[SliceRef, Future[_Loaded]]] = deque()
        remaining = iter(refs)
        for ref in remaining:
            pending.append((ref, self.pool.submit(self._load, ref)))
            if len(pending) >= ahead:
                break
        while pending:
            ref, future = pending.popleft()
            nxt = next(remaining, None)
            if nxt is not None:
                pending.append((nxt, self.pool.submit(self._load, nxt)))
            yield ref, future.result()

    def classify(self, refs: Sequence[SliceRef], on_batch: _BatchHook | None = None) -> Batch:
        """Predict every slice of ``refs``; decoding overlaps the model. ``on_batch`` sees each batch."""
        out = Batch()
        ids: list[int] = []
        arrays: list[np.ndarray] = []
        size = self.settings.worker.batch_size
        for ref, (array, error, seconds) in self._preprocessed(refs):
            out.timings.preprocess += seconds
            if array is None:
                out.undecodable[ref.instance_id] = error or "undecodable"
                continue
            ids.append(ref.instance_id)
            arrays.append(array)
            if len(arrays) >= size:
                self._run(ids, arrays, out, on_batch)
                ids, arrays = [], []
        if arrays:
            self._run(ids, arrays, out, on_batch)
        return out

    def _run(self, ids: list[int], arrays: list[np.ndarray], out: Batch, on_batch: _BatchHook | None) -> None:
        if self.stopping.is_set():
            raise Aborted
        x = np.stack(arrays)
        started = time.perf_counter()
        p_any = self.classifier.detect(x)
        out.timings.stage1 += time.perf_counter() - started
        positive = p_any >= self.classifier.detection_threshold
        started = time.perf_counter()
        conditional = self.classifier.subtype(x[positive])
        out.timings.stage2 += time.perf_counter() - started
        probabilities = compose_probabilities(p_any, conditional, positive)
        out.timings.slices += len(ids)
        batch = dict(zip(ids, probabilities, strict=True))
        out.predictions.update(batch)
        if on_batch is not None:
            on_batch(batch)

    # -- final pass over a claimed series ------------------------------------------------------------

    def process(self, claim: Claim) -> SeriesState:
        """Classify a claimed series and write its results; returns the state it ends in."""
        version = self.classifier.version
        with self.factory() as session:
            refs = self._slice_refs(session, claim.series_id)
            done = load_predictions(session, claim.series_id, version)
        todo = [r for r in refs if r.instance_id not in done and not r.failed]
        lease = {"claim": claim}

        def keep_lease(_: dict[int, np.ndarray]) -> None:
            now = utcnow()
            if (lease["claim"].expires_at - now).total_seconds() < self.settings.worker.lease_seconds / 2:
                with transaction(self.factory) as s:
                    renewed = renew_lease(s, lease["claim"], self.settings.worker.lease_seconds, now)
                if renewed is None:
                    raise LeaseLost
                lease["claim"] = renewed

        batch = self.classify(todo, keep_lease)
        state, rendered = self._write_final(lease["claim"], refs, done | batch.predictions, batch)
        if rendered is not None and self.settings.worker.heatmaps:
            self._render_key_images(claim.series_id, *rendered)
        return state

    def _render_key_images(self, series_id: int, refs: list[SliceRef], slices: SliceProbabilities,
                           findings: Findings) -> None:
        columns = [CLASSES.index(name) for name in findings.subtypes]
        rows = pick_key_slices(slices.probabilities, columns)
        with self.factory() as session:
            series_uid = session.get(Series, series_id).series_uid  # type: ignore[union-attr]
        images = []
        for row in rows:
            ref = refs[row]
            relative = key_image_path(series_uid, ref.sop_instance_uid)
            try:
                render_key_image(self.classifier, ref.path, self.settings.store / relative)
            except Exception:
                LOGGER.exception("series %d: key image of slice %d could not be rendered", series_id, row)
                continue
            images.append(KeyImage(series_id=series_id, sop_instance_uid=ref.sop_instance_uid, path=relative))
        with transaction(self.factory) as session:
            session.execute(delete(KeyImage).where(KeyImage.series_id == series_id))
            session.add_all(images)

    def _write_final(
        self, claim: Claim, refs: list[SliceRef], predictions: dict[int, np.ndarray], batch: Batch
    ) -> tuple[SeriesState, tuple[list[SliceRef], SliceProbabilities, Findings] | None]:
        started = time.perf_counter()
        version = self.classifier.version
        with transaction(self.factory) as session:
            series = lock_claimed(session, claim)
            if series is None:
                raise LeaseLost
            for instance_id, error in batch.undecodable.items():
                instance = session.get(Instance, instance_id)
                if instance is not None:
                    instance.decode_error = error[:2000]
            ordered = [r for r in order_slices(refs) if r.instance_id in predictions]
            if not ordered:
                return give_up(series, "no slice of the series could be decoded", 1), None
            drop_other_versions(session, series.id, version)
            insert_predictions(session, series.id, version, batch.predictions)
            slices = SliceProbabilities(
                [r.sop_instance_uid for r in ordered], np.stack([predictions[r.instance_id] for r in ordered])
            )
            findings = self._findings(session, slices)
            batch.timings.database = time.perf_counter() - started
            was_flagged = series.result is not None and series.result.flagged
            write_result(
                session,
                self.settings,
                series,
                findings,
                version=version,
                provisional=False,
                num_slices=len(ordered),
                num_undecodable=len(batch.undecodable),
                timings=batch.timings.as_dict(),
            )
            now = utcnow()
            state = finish(session, series, [r.instance_id for r in refs], now)
            metrics.observe_classified(series, now)
            if findings.flagged and not was_flagged:
                metrics.observe_flagged(series, now)
        LOGGER.info(
            "series %d %s: %d slices, flagged=%s, %s", claim.series_id, state.value, len(ordered),
            findings.flagged, batch.timings.as_dict(),
        )
        return state, (ordered, slices, findings)

    # -- streaming: slices of series that are still arriving ------------------------------------------

    def stream(self) -> int:
        """Classify one micro-batch of not yet classified slices of ``receiving`` series.

        A series whose slices so far pass the thresholds is flagged at once with a provisional result
        (and its alerts); the final result follows when the series is complete. Returns the number of
        slices classified (0: nothing waiting).
        """
        version = self.classifier.version
        with self.factory() as session:
            waiting = session.scalars(
                select(Instance)
                .join(Series, Series.id == Instance.series_id)
                .outerjoin(
                    SlicePrediction,
                    and_(SlicePrediction.instance_id == Instance.id, SlicePrediction.model_version == version),
                )
                .where(
                    Series.state == SeriesState.RECEIVING.value,
                    SlicePrediction.id.is_(None),
                    Instance.decode_error.is_(None),
                )
                .order_by(Instance.received_at, Instance.id)
                .limit(self.settings.worker.batch_size)
            ).all()
            refs = [self._ref(i) for i in waiting]
            by_series = {i.id: i.series_id for i in waiting}
        if not refs:
            return 0
        batch = self.classify(refs)
        for series_id in sorted(set(by_series.values())):
            self._write_provisional(series_id, batch, by_series)
        return len(refs)

    def _write_provisional(self, series_id: int, batch: Batch, by_series: dict[int, int]) -> None:
        version = self.classifier.version
        mine = {iid: p for iid, p in batch.predictions.items() if by_series[iid] == series_id}
        with transaction(self.factory) as session:
            series = session.scalar(_locked(session, select(Series).where(Series.id == series_id)))
            if series is None:
                return
            for iid, error in batch.undecodable.items():
                if by_series[iid] == series_id and (instance := session.get(Instance, iid)) is not None:
                    instance.decode_error = error[:2000]
            insert_predictions(session, series_id, version, mine)
            if series.state != SeriesState.RECEIVING.value or (series.result and not series.result.provisional):
                return  # the final pass owns the result now
            known = load_predictions(session, series_id, version)
            refs = [r for r in order_slices(self._slice_refs(session, series_id)) if r.instance_id in known]
            slices = SliceProbabilities(
                [r.sop_instance_uid for r in refs], np.stack([known[r.instance_id] for r in refs])
            )
            findings = self._findings(session, slices)
            if not findings.flagged:
                return
            was_flagged = series.result is not None and series.result.flagged
            write_result(session, self.settings, series, findings, version=version, provisional=True,
                         num_slices=len(refs), timings=batch.timings.as_dict())
            if not was_flagged:
                metrics.observe_flagged(series, utcnow())
        if not was_flagged:  # later batches only refresh the provisional result
            LOGGER.info("series %d flagged provisionally while receiving (%d slices so far)", series_id, len(refs))

    def _findings(self, session: Session, slices: SliceProbabilities) -> Findings:
        thresholds, enabled = load_thresholds(session)
        return findings_for(
            slices,
            thresholds,
            enabled,
            rule=self.settings.worker.aggregation,
            adjacent=self.settings.worker.adjacent_slices,
        )

    def _slice_refs(self, session: Session, series_id: int) -> list[SliceRef]:
        return [self._ref(i) for i in session.scalars(select(Instance).where(Instance.series_id == series_id))]

    def _ref(self, instance: Instance) -> SliceRef:
        return SliceRef(
            instance.id,
            instance.sop_instance_uid,
            self.settings.store / instance.path,
            instance.z_position,
            instance.instance_number,
            instance.decode_error is not None,
        )




def _locked(session: Session, statement: Select[Any]) -> Select[Any]:
    """Row lock on PostgreSQL (SQLite transactions already hold the write lock)."""
    if session.get_bind().dialect.name == "postgresql":
        return statement.with_for_update()
    return statement
