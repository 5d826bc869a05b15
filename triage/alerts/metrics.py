"""Prometheus metrics of the alert dispatcher (the web's /metrics exposes the default registry).

Counters live in the process that sends (the worker role); the outbox rows by state are read from
the database by the web at each scrape (``triage_alerts{state=...}``), so ``dead`` shows wherever
/metrics is served.
"""

from __future__ import annotations

import datetime as dt

from prometheus_client import Counter, Histogram

BUCKETS = (0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)

SENT = Counter("triage_alerts_sent_total", "Outbox rows delivered, by channel and kind.", ["channel", "kind"])
FAILED = Counter("triage_alerts_failed_total", "Failed delivery attempts, by channel.", ["channel"])
DEAD = Counter("triage_alerts_dead_total", "Outbox rows given up after the last attempt, by channel.", ["channel"])
CANCELLED = Counter("triage_alerts_cancelled_total", "Outbox rows cancelled before sending, by channel.",
                    ["channel"])
ESCALATED = Counter("triage_alerts_escalations_total", "Escalations added for unacknowledged studies.",
                    ["channel"])
TIME_TO_ALERT = Histogram(
    "triage_alerts_time_to_alert_seconds",
    "First alert of a study delivered, minus the last instance received of the flagged series.",
    ["channel"],
    buckets=BUCKETS,
)
TIME_FROM_FIRST_RECEIVED = Histogram(
    "triage_alerts_time_from_first_received_seconds",
    "First alert of a study delivered, minus the study's first instance received.",
    ["channel"],
    buckets=BUCKETS,
)


def observe_alert(channel: str, sent_at: dt.datetime, series_last_received_at: dt.datetime | None,
                  study_first_received_at: dt.datetime | None) -> None:
    """Record the time-to-alert of a study's first delivered alert on ``channel``."""
    if series_last_received_at is not None:
        TIME_TO_ALERT.labels(channel).observe(max(0.0, (sent_at - series_last_received_at).total_seconds()))
    if study_first_received_at is not None:
        TIME_FROM_FIRST_RECEIVED.labels(channel).observe(
            max(0.0, (sent_at - study_first_received_at).total_seconds())
        )
