"""The worker role: loads the model once, schedules the jobs, wakes them on demand, stops cleanly."""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings
from triage.errors import ConfigError
from triage.worker import jobs
from triage.worker.jobs import WorkerContext
from triage.worker.pipeline import Pipeline

LOGGER = logging.getLogger(__name__)

WORK_JOB = "triage.worker.work"


def worker_id() -> str:
    """A lease owner name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class WorkerService:
    """Registers the worker's scheduler jobs; :meth:`notify` runs the work job at once."""

    name = "worker"

    def __init__(self, settings: Settings, factory: sessionmaker[Session], scheduler: BaseScheduler) -> None:
        self.settings = settings
        self.scheduler = scheduler
        self.ctx = WorkerContext(settings, factory, worker_id())
        self._busy = threading.Lock()

    def start(self) -> None:
        """Load the model on the configured device and schedule the jobs."""
        from triage.model import Classifier

        if self.settings.model is None:
            raise ConfigError(
                "model", None, "the worker needs a model directory: set `model` in the config, TRIAGE_MODEL or --model"
            )
        w = self.settings.worker
        classifier = Classifier(
            self.settings.model, device=w.device, threads=w.threads, batch_size=w.batch_size, backend=w.backend
        )
        LOGGER.info("model %s loaded on %s (%s backend)", classifier.version, classifier.device, w.backend)
        self.ctx.pipeline = Pipeline(self.settings, self.ctx.factory, classifier, stopping=self.ctx.stopping)
        now = dt.datetime.now(dt.UTC)
        # Two scheduler instances of the work job may overlap: the second returns at once (our own lock)
        # after setting the wake flag, instead of APScheduler skipping it with a warning.
        self._add(WORK_JOB, self._work, w.poll_seconds, now, instances=2)
        self._add("triage.worker.mark_ready", lambda: jobs.mark_ready(self.ctx), self._ready_interval(), now)
        expiry_interval = min(30.0, w.lease_seconds / 4)
        self._add("triage.worker.expire_leases", lambda: jobs.expire_leases(self.ctx), expiry_interval, now)
        if w.retention_days > 0:
            self._add("triage.worker.purge", lambda: jobs.purge(self.ctx), 3600.0, now)

    def _ready_interval(self) -> float:
        return max(0.2, min(1.0, self.settings.series.quiet_seconds / 4))

    def _add(
        self, job_id: str, func: Callable[[], object], seconds: float, first: dt.datetime, instances: int = 1
    ) -> None:
        self.scheduler.add_job(
            func, "interval", seconds=seconds, id=job_id, name=job_id, next_run_time=first, replace_existing=True,
            max_instances=instances,
        )

    def _work(self) -> None:
        if not self._busy.acquire(blocking=False):
            self.ctx.wake.set()
            return
        try:
            jobs.work(self.ctx)
        finally:
            self._busy.release()

    def notify(self) -> None:
        """New work may be waiting (a slice was stored, a series completed): run the work job now."""
        self.ctx.wake.set()
        if self._busy.locked():
            return  # the running job sees the wake flag before it stops
        try:
            self.scheduler.modify_job(WORK_JOB, next_run_time=dt.datetime.now(dt.UTC))
        except JobLookupError:
            pass

    def stop(self) -> None:
        """Stop between batches, hand leases back, close the decode pool."""
        self.ctx.stopping.set()
        if self._busy.acquire(timeout=60):
            self._busy.release()
        released = jobs.release_leases(self.ctx)
        if released:
            LOGGER.info("handed %d series back to the queue", released)
        if self.ctx.pipeline is not None:
            self.ctx.pipeline.close()
