"""Jinja filters and globals of the templates: times, relative ages, percentages, labels, SVG helpers."""

from __future__ import annotations

import datetime as dt

from jinja2 import Environment

from triage import __version__
from triage.db.models import utcnow
from triage.domain import CLASSES, SUBTYPES
from triage.web.charts import ABBREVIATIONS, CLASS_COLOURS, probability_bar, probability_chart

STATUS_LABELS = {
    "receiving": "receiving",
    "queued": "queued",
    "processing": "processing",
    "classified": "classified",
    "failed": "failed",
    "not_analysed": "not analysed",
}


def iso(value: dt.datetime | None) -> str:
    """ISO 8601 in UTC with a ``Z`` (what ``<time datetime>`` and the JSON API carry)."""
    if value is None:
        return ""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def when(value: dt.datetime | None) -> str:
    """A readable UTC time (the browser rewrites it in local time)."""
    if value is None:
        return "—"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def age(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """How long ago: ``just now``, ``12 min ago``, ``3 h ago``, ``2 d ago``."""
    if value is None:
        return ""
    seconds = max(0, int(((now or utcnow()) - value).total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min ago"
    return f"{seconds // 86400} d ago"


def duration(start: dt.datetime | None, end: dt.datetime | None) -> str:
    """``+12.3 s`` / ``+4 min 5 s`` from ``start`` to ``end``, or empty."""
    if start is None or end is None:
        return ""
    seconds = (end - start).total_seconds()
    if seconds < 120:
        return f"+{seconds:.1f} s"
    return f"+{int(seconds // 60)} min {int(seconds % 60)} s"


def pct(value: float | None) -> str:
    """``93 %`` or ``—``."""
    return "—" if value is None else f"{round(value * 100):d} %"


def install(env: Environment) -> None:
    """Register the filters and globals on the templates' environment."""
    env.filters.update(iso=iso, when=when, age=age, pct=pct, duration=duration)
    env.globals.update(
        VERSION=__version__, CLASSES=CLASSES, SUBTYPES=SUBTYPES, ABBR=ABBREVIATIONS, COLOURS=CLASS_COLOURS,
        STATUS_LABELS=STATUS_LABELS, probability_bar=probability_bar, probability_chart=probability_chart,
    )
