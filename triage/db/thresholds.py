"""The admin-editable thresholds: seeded from the settings once, then owned by the database."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from triage.db.engine import dialect_insert, transaction
from triage.db.models import Threshold
from triage.domain import CLASSES


def seed_thresholds(factory: sessionmaker[Session], initial: Mapping[str, float]) -> None:
    """Insert a threshold row for every class that has none (existing rows are the admin's and stay).

    Several processes may start at once on one database: a row another one has just inserted is kept.
    """
    rows = [{"class_name": name, "threshold": float(initial[name]), "alert_enabled": True} for name in CLASSES]
    with transaction(factory) as session:
        session.execute(dialect_insert(session)(Threshold).on_conflict_do_nothing(index_elements=["class_name"]), rows)


def load_thresholds(session: Session) -> tuple[dict[str, float], dict[str, bool]]:
    """The current thresholds and alert switches, per class."""
    rows = session.scalars(select(Threshold)).all()
    return {r.class_name: r.threshold for r in rows}, {r.class_name: r.alert_enabled for r in rows}
