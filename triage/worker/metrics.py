"""Prometheus metrics of the worker: time-to-classify, time-to-flag, slices classified."""

from __future__ import annotations

import datetime as dt

from prometheus_client import Counter, Histogram

from triage.db.models import Series

BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600)

TIME_TO_CLASSIFY = Histogram(
    "triage_time_to_classify_seconds",
    "From the last slice received to the final result of the series.",
    buckets=BUCKETS,
)
TIME_TO_FLAG = Histogram(
    "triage_time_to_flag_seconds",
    "From the last slice received (so far) to the flagged result and its outbox rows.",
    buckets=BUCKETS,
)
SERIES_DONE = Counter("triage_series_processed_total", "Series the worker finished, by outcome.", ["outcome"])


def observe_classified(series: Series, now: dt.datetime) -> None:
    """Record a final result."""
    TIME_TO_CLASSIFY.observe(max(0.0, (now - series.last_received_at).total_seconds()))
    SERIES_DONE.labels("classified").inc()


def observe_flagged(series: Series, now: dt.datetime) -> None:
    """Record the moment a series was flagged (provisional or final)."""
    TIME_TO_FLAG.observe(max(0.0, (now - series.last_received_at).total_seconds()))
