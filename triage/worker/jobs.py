"""The worker's scheduler jobs as plain functions (tests call them directly, the scheduler calls them)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings
from triage.db import ingest
from triage.db.engine import transaction
from triage.db.models import Instance, KeyImage, Study, utcnow
from triage.db.queue import Claim, claim_next, give_up, lock_claimed, release_expired, release_owned
from triage.domain import SeriesState
from triage.worker.pipeline import Aborted, LeaseLost, Pipeline

LOGGER = logging.getLogger(__name__)

ACTIVE = (SeriesState.RECEIVING.value, SeriesState.QUEUED.value, SeriesState.PROCESSING.value)


@dataclass
class WorkerContext:
    """What every job needs: settings, database, the pipeline (None for jobs without a model), identity."""

    settings: Settings
    factory: sessionmaker[Session]
    owner: str
    pipeline: Pipeline | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)


def work(ctx: WorkerContext) -> int:
    """Drain the queue: stream slices of arriving series, classify claimed series. Returns series finished."""
    assert ctx.pipeline is not None  # noqa: S101 - the service builds it before scheduling this job
    finished = 0
    while not ctx.stopping.is_set():
        ctx.wake.clear()
        streamed = ctx.pipeline.stream() if ctx.settings.worker.streaming else 0
        done = process_one(ctx)
        finished += done
        if not streamed and not done and not ctx.wake.is_set():
            break
    return finished


def process_one(ctx: WorkerContext) -> int:
    """Claim the oldest queued series and classify it; 1 when a series was taken, else 0."""
    assert ctx.pipeline is not None  # noqa: S101
    settings = ctx.settings.worker
    with transaction(ctx.factory) as session:
        claim = claim_next(session, ctx.owner, settings.lease_seconds, utcnow())
    if claim is None:
        return 0
    try:
        ctx.pipeline.process(claim)
    except Aborted:
        with transaction(ctx.factory) as session:
            release_owned(session, ctx.owner)
        LOGGER.info("series %d handed back to the queue: the worker is stopping", claim.series_id)
    except LeaseLost:
        LOGGER.warning("series %d: lease lost to another worker; our results were discarded", claim.series_id)
    except Exception as exc:
        LOGGER.exception("series %d: classification failed", claim.series_id)
        _fail(ctx, claim, f"{type(exc).__name__}: {exc}")
    return 1


def _fail(ctx: WorkerContext, claim: Claim, reason: str) -> None:
    with transaction(ctx.factory) as session:
        series = lock_claimed(session, claim)
        if series is not None:
            give_up(series, reason[:1000], ctx.settings.worker.max_attempts)


def mark_ready(ctx: WorkerContext) -> int:
    """Queue the series whose quiet time has passed; wake the work job when any was queued."""
    with transaction(ctx.factory) as session:
        queued = ingest.mark_ready(session, ctx.settings.series, utcnow())
    if queued:
        ctx.wake.set()
    return len(queued)


def expire_leases(ctx: WorkerContext) -> int:
    """Return series of dead workers to the queue (or fail them after the maximum attempts)."""
    with transaction(ctx.factory) as session:
        released = release_expired(session, utcnow(), ctx.settings.worker.max_attempts)
    if released:
        ctx.wake.set()
    return len(released)


def release_leases(ctx: WorkerContext) -> int:
    """On a clean stop: give back every series this worker holds, without counting an attempt."""
    with transaction(ctx.factory) as session:
        return len(release_owned(session, ctx.owner))


def purge(ctx: WorkerContext, now: dt.datetime | None = None) -> int:
    """Delete studies (rows, stored files, key images) older than the retention period; 0 when it is off.

    A study is old when its last slice arrived more than ``worker.retention_days`` ago and none of its
    series is still receiving, queued or processing. The PACS keeps the images; triage keeps a window.
    """
    days = ctx.settings.worker.retention_days
    if days <= 0:
        return 0
    cutoff = (now or utcnow()) - dt.timedelta(days=days)
    store = ctx.settings.store
    with transaction(ctx.factory) as session:
        old = session.scalars(select(Study).where(Study.last_received_at < cutoff)).all()
        removed = 0
        for study in old:
            if any(series.state in ACTIVE for series in study.series):
                continue
            series_ids = [series.id for series in study.series]
            images = session.scalars(select(KeyImage).where(KeyImage.series_id.in_(series_ids))).all()
            rows: list[KeyImage | Instance] = [*images, *(i for se in study.series for i in se.instances)]
            files = [store / row.path for row in rows]
            for path in files:
                path.unlink(missing_ok=True)
            for folder in {path.parent for path in files}:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty
            session.delete(study)
            removed += 1
    if removed:
        LOGGER.info("retention: removed %d studies older than %s days", removed, days)
    return removed

