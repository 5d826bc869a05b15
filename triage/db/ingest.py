"""The database side of ingest: one received instance becomes rows, and receiving series become ready.

:func:`record_instance` is called for every stored file (inside the caller's transaction); it creates
or updates the study and series rows, adds the instance once (a repeated SOP Instance UID is a
duplicate, not an error), applies the state rules of a late slice and queues a series at once when
it is provably complete. :func:`mark_ready` is the scheduler's quiet-time check.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, Table, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session

from triage.config import SeriesSettings
from triage.db.models import Instance, Series, Study
from triage.db.queue import set_state
from triage.dicom.completion import is_complete
from triage.dicom.gate import SeriesFacts, refusal
from triage.domain import SeriesState

LOGGER = logging.getLogger(__name__)

#: Enhanced CT Image Storage: one instance holds many slices (frames).
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"


@dataclass(frozen=True)
class InstanceHeader:
    """What ingest keeps of one instance's header (validated UIDs, text already decoded)."""

    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax_uid: str
    modality: str = "CT"
    patient_id: str = ""
    patient_name: str = ""
    accession_number: str = ""
    study_description: str = ""
    study_date: str = ""
    series_number: int | None = None
    series_description: str = ""
    body_part: str = ""
    slice_thickness: float | None = None
    image_type: str = ""
    instance_number: int | None = None
    z_position: float | None = None
    expected_instances: int | None = None


@dataclass(frozen=True)
class Recorded:
    """What :func:`record_instance` did.

    Attributes
    ----------
    series_id
        The series row.
    duplicate
        True when the SOP Instance UID was already stored (nothing was added).
    path
        The stored path of the instance row (the earlier one for a duplicate).
    state
        The series state after the instance.
    """

    series_id: int
    duplicate: bool
    path: str
    state: SeriesState


def record_instance(
    session: Session,
    header: InstanceHeader,
    *,
    path: str,
    size_bytes: int,
    calling_aet: str,
    now: dt.datetime,
    series_settings: SeriesSettings,
) -> Recorded:
    """Add the rows of one stored instance to ``session`` (the caller commits).

    Parameters
    ----------
    session
        A session inside a transaction.
    header
        The validated header of the instance.
    path
        Its file, relative to the storage directory.
    size_bytes
        The file's size.
    calling_aet
        The AE title that sent it.
    now
        The time of receipt (timezone-aware).
    series_settings
        For the series gate when the series turns out to be complete.

    Returns
    -------
    Recorded
        ``duplicate=True`` (and nothing changed but the series' last receipt time) when the SOP
        Instance UID was stored before, also when a concurrent transaction stored it first.
    """
    session.flush()
    study_id = _upsert_study(session, header, calling_aet, now)
    row = _upsert_series(session, study_id, header, now)
    series_id, state = int(row.id), SeriesState(row.state)
    if _insert_instance(session, series_id, header, path, size_bytes, now) is None:
        session.execute(_uncount(series_id))
        stored = session.scalar(select(Instance.path).where(Instance.sop_instance_uid == header.sop_instance_uid))
        return Recorded(series_id, True, stored or path, state)
    complete_soon = row.expected_instances is not None and row.num_instances >= row.expected_instances
    if state in _REOPENED or (state is SeriesState.RECEIVING and complete_soon):
        state = _apply_state_rules(session, series_id, series_settings, now)
    return Recorded(series_id, False, path, state)


#: States that a new slice moves back to ``receiving``.
_REOPENED = frozenset({SeriesState.CLASSIFIED, SeriesState.FAILED, SeriesState.QUEUED})


def _apply_state_rules(session: Session, series_id: int, series_settings: SeriesSettings,
                       now: dt.datetime) -> SeriesState:
    """A late slice re-opens the series; a provably complete series is finished at once."""
    series = session.get(Series, series_id, populate_existing=True)
    assert series is not None  # noqa: S101 - the upsert returned its id in this transaction
    _late_slice(series)
    if series.state == SeriesState.RECEIVING and _provably_complete(session, series):
        finish_series(session, series, series_settings, now)
    return SeriesState(series.state)


def _uncount(series_id: int) -> Any:
    """Undo the count of the series upsert for an instance that turned out to be a duplicate."""
    series = _table(Series)
    return update(series).where(series.c.id == series_id).values(num_instances=series.c.num_instances - 1)


def _table(model: type[Any]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)  # noqa: S101 - every model here maps one table
    return table


def is_stored(session: Session, sop_instance_uid: str) -> bool:
    """Whether an instance row exists for ``sop_instance_uid``."""
    found = session.scalar(select(Instance.id).where(Instance.sop_instance_uid == sop_instance_uid))
    return found is not None


def mark_ready(session: Session, series_settings: SeriesSettings, now: dt.datetime) -> list[int]:
    """Move ``receiving`` series whose quiet time has passed to ``queued`` or ``not_analysed``.

    A series is quiet when ``last_received_at + quiet_seconds <= now``. The series gate decides:
    a refused series becomes ``not_analysed`` with the reason (stored and listed, never dropped).
    Rows that another transaction holds are skipped (PostgreSQL) and picked up by the next call.

    Parameters
    ----------
    session
        A session inside a transaction (the caller commits).
    series_settings
        ``quiet_seconds`` and the gate rules.
    now
        The current time (timezone-aware).

    Returns
    -------
    list of int
        Ids of the series that were queued.
    """
    cutoff = now - dt.timedelta(seconds=series_settings.quiet_seconds)
    quiet = session.scalars(
        select(Series)
        .where(Series.state == SeriesState.RECEIVING.value, Series.last_received_at <= cutoff)
        .order_by(Series.id)
        .with_for_update(skip_locked=True)
    ).all()
    queued = []
    for series in quiet:
        if finish_series(session, series, series_settings, now) is SeriesState.QUEUED:
            queued.append(series.id)
    return queued


def finish_series(session: Session, series: Series, series_settings: SeriesSettings, now: dt.datetime) -> SeriesState:
    """Move a complete ``receiving`` series to ``queued`` (``ready_at = now``) or ``not_analysed``.

    Returns the new state.
    """
    reason = refusal(_facts(session, series), series_settings)
    if reason is None:
        set_state(series, SeriesState.QUEUED)
        series.ready_at = now
        LOGGER.info("series %d is complete with %d instances: queued", series.id, series.num_instances)
        return SeriesState.QUEUED
    set_state(series, SeriesState.NOT_ANALYSED, reason)
    LOGGER.info("series %d is complete but %s", series.id, reason)
    return SeriesState.NOT_ANALYSED


def _facts(session: Session, series: Series) -> SeriesFacts:
    study_description = session.scalar(select(Study.study_description).where(Study.id == series.study_id))
    return SeriesFacts(
        modality=series.modality,
        body_part=series.body_part,
        series_description=series.series_description,
        study_description=study_description or "",
        slice_thickness=series.slice_thickness,
        image_type=series.image_type,
        num_instances=series.num_instances,
        multiframe=session.scalar(
            select(Instance.id).where(Instance.series_id == series.id, Instance.sop_class_uid == ENHANCED_CT).limit(1)
        ) is not None,
    )


def _late_slice(series: Series) -> None:
    """A new slice re-opens a finished or waiting series; a series being processed keeps its state."""
    state = SeriesState(series.state)
    if state in (SeriesState.CLASSIFIED, SeriesState.FAILED, SeriesState.QUEUED):
        set_state(series, SeriesState.RECEIVING)
        series.ready_at = None
        LOGGER.info("series %d received a new slice while %s: receiving again", series.id, state.value)


def _provably_complete(session: Session, series: Series) -> bool:
    expected = series.expected_instances
    if expected is None or series.num_instances < expected:
        return False
    z_positions = session.scalars(select(Instance.z_position).where(Instance.series_id == series.id)).all()
    return is_complete(expected, list(z_positions))


@dataclass(frozen=True)
class _Statements:
    """The three insert statements of an instance, built once per dialect (building them is costly)."""

    study: Any
    series: Any
    instance: Any


_STUDY_FIELDS = ("study_uid", "patient_id", "patient_name", "accession_number", "study_description", "study_date",
                 "calling_aet", "first_received_at", "last_received_at")
_SERIES_FIELDS = ("study_id", "series_uid", "series_number", "series_description", "body_part", "modality",
                  "slice_thickness", "image_type", "expected_instances", "num_instances", "state",
                  "first_received_at", "last_received_at")
_INSTANCE_FIELDS = ("series_id", "sop_instance_uid", "sop_class_uid", "transfer_syntax_uid", "path", "size_bytes",
                    "instance_number", "z_position", "received_at")


@functools.cache
def _statements(dialect: str) -> _Statements:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert

    def values(table: Table, fields: tuple[str, ...]) -> Any:
        return insert(table).values({name: bindparam(name, type_=table.c[name].type) for name in fields})

    def upsert(table: Table, fields: tuple[str, ...], key: str, **changes: Any) -> Any:
        stmt = values(table, fields)
        return stmt.on_conflict_do_update(
            index_elements=[table.c[key]], set_={"last_received_at": stmt.excluded.last_received_at, **changes}
        )

    study, series = _table(Study), _table(Series)
    excluded = insert(series).excluded
    series_upsert = upsert(
        series,
        _SERIES_FIELDS,
        "series_uid",
        num_instances=series.c.num_instances + 1,
        expected_instances=func.coalesce(series.c.expected_instances, excluded.expected_instances),
    ).returning(series.c.id, series.c.state, series.c.num_instances, series.c.expected_instances)
    instance = _table(Instance)
    return _Statements(
        study=upsert(study, _STUDY_FIELDS, "study_uid").returning(study.c.id),
        series=series_upsert,
        instance=values(instance, _INSTANCE_FIELDS)
        .on_conflict_do_nothing(index_elements=[instance.c.sop_instance_uid])
        .returning(instance.c.id),
    )


def _execute(session: Session, kind: str, params: dict[str, Any]) -> Any:
    stmt = getattr(_statements(session.get_bind().dialect.name), kind)
    return session.execute(stmt, params).one_or_none()


def _fit(column: InstrumentedAttribute[Any], value: str) -> str:
    """``value`` cut to the column's length (PostgreSQL refuses longer strings)."""
    length = column.type.length if isinstance(column.type, String) else None
    return value[:length] if length else value


def _upsert_study(session: Session, h: InstanceHeader, calling_aet: str, now: dt.datetime) -> int:
    row = _execute(session, "study", {
        "study_uid": h.study_uid,
        "patient_id": _fit(Study.patient_id, h.patient_id),
        "patient_name": _fit(Study.patient_name, h.patient_name),
        "accession_number": _fit(Study.accession_number, h.accession_number),
        "study_description": _fit(Study.study_description, h.study_description),
        "study_date": h.study_date,
        "calling_aet": _fit(Study.calling_aet, calling_aet),
        "first_received_at": now,
        "last_received_at": now,
    })
    return int(row.id)


def _upsert_series(session: Session, study_id: int, h: InstanceHeader, now: dt.datetime) -> Any:
    """The series row after counting the instance in: id, state, num_instances, expected_instances."""
    return _execute(session, "series", {
        "study_id": study_id,
        "series_uid": h.series_uid,
        "series_number": h.series_number,
        "series_description": _fit(Series.series_description, h.series_description),
        "body_part": _fit(Series.body_part, h.body_part),
        "modality": _fit(Series.modality, h.modality),
        "slice_thickness": h.slice_thickness,
        "image_type": _fit(Series.image_type, h.image_type),
        "expected_instances": h.expected_instances,
        "num_instances": 1,
        "state": SeriesState.RECEIVING.value,
        "first_received_at": now,
        "last_received_at": now,
    })


def _insert_instance(
    session: Session, series_id: int, h: InstanceHeader, path: str, size_bytes: int, now: dt.datetime
) -> int | None:
    found = _execute(session, "instance", {
        "series_id": series_id,
        "sop_instance_uid": h.sop_instance_uid,
        "sop_class_uid": h.sop_class_uid,
        "transfer_syntax_uid": h.transfer_syntax_uid,
        "path": path,
        "size_bytes": size_bytes,
        "instance_number": h.instance_number,
        "z_position": h.z_position,
        "received_at": now,
    })
    return None if found is None else int(found.id)
