"""/metrics: the process's default Prometheus registry plus gauges read from the database per scrape."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from triage.db import queries

LOGGER = logging.getLogger(__name__)


class DatabaseCollector(Collector):
    """Studies by status, series by state, queue depth and alert outbox rows by state.

    Read from the database at every scrape, so the figures are the same whichever process serves them.
    """

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the gauges (only ``triage_database_up 0`` when the database cannot be read)."""
        up = GaugeMetricFamily("triage_database_up", "Whether the web could read the database at this scrape")
        try:
            with self.factory() as session:
                studies = queries.study_status_counts(session)
                series = queries.series_state_counts(session)
                alerts = queries.alert_state_counts(session)
        except SQLAlchemyError as exc:
            LOGGER.warning("metrics: the database cannot be read (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield _labelled("triage_studies", "Studies by derived status", "status", studies)
        yield _labelled("triage_series", "Series by queue state", "state", series)
        queue = {"waiting": series["queued"], "processing": series["processing"], "failed": series["failed"]}
        yield _labelled("triage_queue_depth", "Series waiting for, in, or failed in classification",
                        "state", queue)
        yield _labelled("triage_alerts", "Alert outbox rows by state (dead: gave up)", "state", alerts)


def _labelled(name: str, documentation: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def database_registry(factory: sessionmaker[Session]) -> CollectorRegistry:
    """A registry of its own for the database gauges (one per app, so apps never collide)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(factory))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The text format of the default registry (other parts' counters) followed by ``registry``."""
    return generate_latest(REGISTRY) + generate_latest(registry)
