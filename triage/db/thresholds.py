"""The admin-editable thresholds: seeded from the settings once, then owned by the database."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from triage.db.engine import transaction
from triage.db.models import Threshold
from triage.domain import CLASSES


def seed_thresholds(factory: sessionmaker[Session], initial: Mapping[str, float]) -> None:
    """Insert a threshold row for every class that has none (existing rows are the admin's and stay)."""
    with transaction(factory) as session:
        present = set(session.scalars(select(Threshold.class_name)))
        for name in CLASSES:
            if name not in present:
                session.add(Threshold(class_name=name, threshold=float(initial[name]), alert_enabled=True))


def load_thresholds(session: Session) -> tuple[dict[str, float], dict[str, bool]]:
    """The current thresholds and alert switches, per class."""
    rows = session.scalars(select(Threshold)).all()
    return {r.class_name: r.threshold for r in rows}, {r.class_name: r.alert_enabled for r in rows}
