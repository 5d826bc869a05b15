"""Read queries of the web part: the worklist, one study in detail, admin lists and counts.

Everything here only reads. The study-level status is derived from the states of a study's
series (:func:`status_expression`); study-level probabilities are the per-class maximum over
the study's series results.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select
from sqlalchemy.orm import Session

from triage.db.models import (
    Alert,
    ApiToken,
    AuditEvent,
    Feedback,
    Instance,
    KeyImage,
    Series,
    SeriesResult,
    SlicePrediction,
    Study,
    User,
)
from triage.domain import ANY, CLASSES, SeriesState, apply_thresholds

#: Study status values, in the order the derivation tries them (the first that applies wins).
STUDY_STATUSES: tuple[str, ...] = (
    SeriesState.PROCESSING.value,
    SeriesState.QUEUED.value,
    SeriesState.RECEIVING.value,
    SeriesState.CLASSIFIED.value,
    SeriesState.FAILED.value,
    SeriesState.NOT_ANALYSED.value,
)

_PROB_COLUMNS = tuple(f"p_{name}" for name in CLASSES)


# -- study status ------------------------------------------------------------------------------------


def _series_counts() -> Select[*tuple[Any, ...]]:
    """Per study: how many series are in each state, and how many instances the series hold."""
    columns = [
        func.sum(case((Series.state == state, 1), else_=0)).label(f"n_{state}") for state in STUDY_STATUSES
    ]
    return select(
        Series.study_id.label("study_id"),
        *columns,
        func.sum(Series.num_instances).label("num_instances"),
        func.count(Series.id).label("num_series"),
    ).group_by(Series.study_id)


def status_expression(counts: object) -> ColumnElement[str]:
    """SQL for the study status from a :func:`_series_counts` subquery.

    Any series still ``processing``, ``queued`` or ``receiving`` makes the study that (in this
    order); otherwise ``classified`` when a series was classified, ``failed`` when one failed, and
    ``not_analysed`` when the series gate analysed none. A study without series is ``receiving``.
    """
    c = counts.c  # type: ignore[attr-defined]
    whens = [(func.coalesce(getattr(c, f"n_{state}"), 0) > 0, state) for state in STUDY_STATUSES]
    return case(*whens, else_=SeriesState.RECEIVING.value)


# -- worklist ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorklistFilter:
    """What the worklist shows: flagged only, one status, received between two dates (UTC days)."""

    flagged: bool | None = None
    status: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    search: str | None = None


@dataclass(frozen=True)
class WorklistItem:
    """One worklist row: the study, its derived status and its study-level findings."""

    study_uid: str
    accession_number: str
    patient_id: str
    patient_name: str
    study_description: str
    received_at: dt.datetime
    last_received_at: dt.datetime
    status: str
    status_reason: str | None
    priority: str
    score: float
    flagged: bool
    probabilities: dict[str, float | None]
    subtypes: list[str]
    num_instances: int
    num_series: int
    key_instance_uid: str | None
    acknowledged: bool
    acknowledged_at: dt.datetime | None
    acknowledged_by: str | None
    classified_at: dt.datetime | None
    alerted_at: dt.datetime | None
    model_version: str | None
    error: str | None
    provisional: bool


@dataclass(frozen=True)
class WorklistPage:
    """A page of the worklist and how many studies match the filter in all."""

    items: list[WorklistItem]
    total: int


def priority_order() -> tuple[Any, ...]:
    """ORDER BY of the worklist: flagged and unacknowledged first, then by score, then oldest first."""
    urgent = case((and_(Study.flagged.is_(True), Study.acknowledged_at.is_(None)), 0), else_=1)
    return (urgent.asc(), Study.score.desc(), Study.first_received_at.asc(), Study.id.asc())


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def _filtered(statement: Select[Any], filt: WorklistFilter) -> Select[Any]:
    if filt.flagged is not None:
        statement = statement.where(Study.flagged.is_(filt.flagged))
    if filt.date_from is not None:
        statement = statement.where(Study.first_received_at >= _day_start(filt.date_from))
    if filt.date_to is not None and filt.date_to < dt.date.max:
        statement = statement.where(Study.first_received_at < _day_start(filt.date_to + dt.timedelta(days=1)))
    if filt.search and filt.search.strip():
        term = filt.search.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{term}%"
        columns = (Study.accession_number, Study.patient_id, Study.patient_name, Study.study_description)
        statement = statement.where(or_(*(func.lower(c).like(pattern, escape="\\") for c in columns)))
    return statement


def worklist(session: Session, filt: WorklistFilter | None = None, *, limit: int = 200,
             offset: int = 0) -> WorklistPage:
    """The studies matching ``filt``, highest priority first (see :func:`priority_order`).

    Parameters
    ----------
    session
        An open session.
    filt
        Filters; None shows every study.
    limit, offset
        The page to return.
    """
    filt = filt or WorklistFilter()
    base = select(Study)
    if filt.status:  # only this filter needs every study's series states
        counts = _series_counts().subquery()
        base = base.outerjoin(counts, counts.c.study_id == Study.id).where(status_expression(counts) == filt.status)
    base = _filtered(base, filt)
    total = session.scalar(select(func.count()).select_from(base.order_by(None).subquery())) or 0
    studies = list(session.scalars(base.order_by(*priority_order()).limit(limit).offset(offset)))
    return WorklistPage(items=_items(session, studies), total=int(total))


def _items(session: Session, studies: Sequence[Study]) -> list[WorklistItem]:
    ids = [s.id for s in studies]
    summaries = {row.study_id: row for row in session.execute(_series_counts().where(Series.study_id.in_(ids)))}
    details = _series_details(session, ids)
    items = []
    for study in studies:
        row = summaries.get(study.id)
        counts = {state: int(getattr(row, f"n_{state}") or 0) for state in STUDY_STATUSES} if row else {}
        items.append(_item(study, derive_status(counts), int(row.num_instances or 0) if row else 0,
                           int(row.num_series or 0) if row else 0, details.get(study.id, [])))
    return items


def derive_status(counts: Mapping[str, int]) -> str:
    """The study status from how many of its series are in each state (as :func:`status_expression`)."""
    return next((state for state in STUDY_STATUSES if counts.get(state, 0) > 0), SeriesState.RECEIVING.value)


@dataclass
class _SeriesInfo:
    """What the worklist needs of one series: its state and reason, and its result when there is one."""

    state: str
    state_reason: str | None
    result: SeriesResult | None


def _series_details(session: Session, study_ids: Sequence[int]) -> dict[int, list[_SeriesInfo]]:
    if not study_ids:
        return {}
    rows = session.execute(
        select(Series.study_id, Series.state, Series.state_reason, SeriesResult)
        .outerjoin(SeriesResult, SeriesResult.series_id == Series.id)
        .where(Series.study_id.in_(study_ids))
        .order_by(Series.id)
    ).all()
    out: dict[int, list[_SeriesInfo]] = {}
    for study_id, state, reason, result in rows:
        out.setdefault(study_id, []).append(_SeriesInfo(state, reason, result))
    return out


@dataclass(frozen=True)
class StudyFindings:
    """Study-level findings aggregated over the series results."""

    probabilities: dict[str, float | None]
    subtypes: list[str]
    flagged_classes: list[str]
    key_instance_uid: str | None
    model_version: str | None
    provisional: bool
    error: str | None


def aggregate_results(results: Iterable[SeriesResult]) -> StudyFindings:
    """Per class the maximum over ``results``; key slice of the series with the highest P(any)."""
    results = list(results)
    if not results:
        return StudyFindings({name: None for name in CLASSES}, [], [], None, None, False, None)
    probabilities: dict[str, float | None] = {
        name: max(float(getattr(r, f"p_{name}")) for r in results) for name in CLASSES
    }
    flagged = {name for r in results for name in (r.flagged_classes or [])}
    flagged_classes = [name for name in CLASSES if name in flagged]
    top = max(results, key=lambda r: (r.p_any, r.created_at))
    latest = max(results, key=lambda r: r.created_at)
    errors = [r.error for r in results if r.error]
    return StudyFindings(
        probabilities=probabilities,
        subtypes=[name for name in flagged_classes if name != ANY],
        flagged_classes=flagged_classes,
        key_instance_uid=top.key_instance_uid,
        model_version=latest.model_version,
        provisional=any(r.provisional for r in results),
        error="; ".join(errors) or None,
    )


def _reason(series: Sequence[_SeriesInfo], status: str) -> str | None:
    """Why a study is failed or not analysed (the reasons of its series in that state)."""
    reasons = [s.state_reason for s in series if s.state == status and s.state_reason]
    return "; ".join(dict.fromkeys(reasons)) or None


def _item(study: Study, status: str, num_instances: int, num_series: int,
          series: Sequence[_SeriesInfo]) -> WorklistItem:
    findings = aggregate_results(s.result for s in series if s.result is not None)
    failures = _reason(series, SeriesState.FAILED.value)
    error = "; ".join(e for e in (failures, findings.error) if e) or None
    reason = _reason(series, status) if status in (SeriesState.FAILED.value, SeriesState.NOT_ANALYSED.value) else None
    return WorklistItem(
        study_uid=study.study_uid,
        accession_number=study.accession_number,
        patient_id=study.patient_id,
        patient_name=study.patient_name,
        study_description=study.study_description,
        received_at=study.first_received_at,
        last_received_at=study.last_received_at,
        status=status,
        status_reason=reason,
        priority=study.priority,
        score=float(study.score),
        flagged=bool(study.flagged),
        probabilities=findings.probabilities,
        subtypes=findings.subtypes,
        num_instances=num_instances,
        num_series=num_series,
        key_instance_uid=findings.key_instance_uid,
        acknowledged=study.acknowledged_at is not None,
        acknowledged_at=study.acknowledged_at,
        acknowledged_by=study.acknowledged_by,
        classified_at=study.classified_at,
        alerted_at=study.alerted_at,
        model_version=findings.model_version,
        error=error,
        provisional=findings.provisional,
    )


def worklist_item(session: Session, study_uid: str) -> WorklistItem | None:
    """The worklist row of one study, or None when the UID is unknown."""
    study = session.scalars(select(Study).where(Study.study_uid == study_uid)).first()
    return None if study is None else _items(session, [study])[0]


# -- one study ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlicePoint:
    """The probabilities of one slice, with where the slice lies."""

    sop_instance_uid: str
    instance_number: int | None
    z_position: float | None
    probabilities: dict[str, float]


@dataclass(frozen=True)
class KeyImageRow:
    """A stored key image (path relative to the storage directory)."""

    id: int
    sop_instance_uid: str
    kind: str
    path: str


@dataclass(frozen=True)
class SeriesDetail:
    """One series with its queue state, per-stage times, result, slices and key images."""

    series_uid: str
    series_number: int | None
    series_description: str
    state: str
    state_reason: str | None
    num_instances: int
    first_received_at: dt.datetime
    last_received_at: dt.datetime
    ready_at: dt.datetime | None
    processing_started_at: dt.datetime | None
    classified_at: dt.datetime | None
    result: SeriesResult | None
    slices: list[SlicePoint]
    key_images: list[KeyImageRow]


@dataclass(frozen=True)
class FeedbackRow:
    """A radiologist's verdict on the study."""

    username: str
    agree: bool
    true_subtypes: list[str]
    comment: str
    created_at: dt.datetime


@dataclass(frozen=True)
class StudyDetail:
    """Everything the study page shows."""

    item: WorklistItem
    series: list[SeriesDetail]
    feedback: list[FeedbackRow] = field(default_factory=list)

    @property
    def key_images(self) -> list[KeyImageRow]:
        """Key images of every series, the key slice of the study first."""
        images = [image for s in self.series for image in s.key_images]
        key = self.item.key_instance_uid
        return sorted(images, key=lambda image: (image.sop_instance_uid != key, image.id))

    def stage_times(self) -> dict[str, dt.datetime | None]:
        """When each stage happened, study-wide (earliest series for starts, latest for ends)."""
        def first(values: Iterable[dt.datetime | None]) -> dt.datetime | None:
            return min((v for v in values if v is not None), default=None)

        def last(values: Iterable[dt.datetime | None]) -> dt.datetime | None:
            return max((v for v in values if v is not None), default=None)

        item = self.item
        return {
            "first_received": item.received_at,
            "last_received": item.last_received_at,
            "ready": first(s.ready_at for s in self.series),
            "processing_started": first(s.processing_started_at for s in self.series),
            "classified": item.classified_at or last(s.classified_at for s in self.series),
            "alert_sent": item.alerted_at,
            "acknowledged": item.acknowledged_at,
        }


def _slices(session: Session, series_id: int, version: str | None) -> list[SlicePoint]:
    if version is None:
        version = session.scalar(
            select(SlicePrediction.model_version)
            .where(SlicePrediction.series_id == series_id)
            .order_by(SlicePrediction.created_at.desc(), SlicePrediction.id.desc())
            .limit(1)
        )
        if version is None:
            return []
    rows = session.execute(
        select(Instance.sop_instance_uid, Instance.instance_number, Instance.z_position,
               *(getattr(SlicePrediction, c) for c in _PROB_COLUMNS))
        .join(Instance, Instance.id == SlicePrediction.instance_id)
        .where(SlicePrediction.series_id == series_id, SlicePrediction.model_version == version)
        .order_by(Instance.z_position, Instance.instance_number, Instance.id)
    ).all()
    return [
        SlicePoint(row[0], row[1], row[2], {name: float(p) for name, p in zip(CLASSES, row[3:], strict=True)})
        for row in rows
    ]


def _series_detail(session: Session, series: Series) -> SeriesDetail:
    result = series.result
    images = session.scalars(select(KeyImage).where(KeyImage.series_id == series.id).order_by(KeyImage.id)).all()
    return SeriesDetail(
        series_uid=series.series_uid,
        series_number=series.series_number,
        series_description=series.series_description,
        state=series.state,
        state_reason=series.state_reason,
        num_instances=series.num_instances,
        first_received_at=series.first_received_at,
        last_received_at=series.last_received_at,
        ready_at=series.ready_at,
        processing_started_at=series.processing_started_at,
        classified_at=series.classified_at,
        result=result,
        slices=_slices(session, series.id, result.model_version if result else None),
        key_images=[KeyImageRow(i.id, i.sop_instance_uid, i.kind, i.path) for i in images],
    )


def study_detail(session: Session, study_uid: str) -> StudyDetail | None:
    """The study page's data, or None when the UID is unknown."""
    item = worklist_item(session, study_uid)
    if item is None:
        return None
    study = session.scalars(select(Study).where(Study.study_uid == study_uid)).one()
    series = session.scalars(select(Series).where(Series.study_id == study.id).order_by(Series.id)).all()
    feedback = session.scalars(
        select(Feedback).where(Feedback.study_id == study.id).order_by(Feedback.created_at.desc())
    ).all()
    return StudyDetail(
        item=item,
        series=[_series_detail(session, s) for s in series],
        feedback=[FeedbackRow(f.username, f.agree, list(f.true_subtypes or []), f.comment, f.created_at)
                  for f in feedback],
    )


def key_image(session: Session, image_id: int) -> KeyImageRow | None:
    """One key image row, or None."""
    image = session.get(KeyImage, image_id)
    if image is None:
        return None
    return KeyImageRow(image.id, image.sop_instance_uid, image.kind, image.path)


# -- counts ---------------------------------------------------------------------------------------


def series_state_counts(session: Session) -> dict[str, int]:
    """How many series are in each state (every state present, zero when none)."""
    counts = {state.value: 0 for state in SeriesState}
    for state, n in session.execute(select(Series.state, func.count()).group_by(Series.state)):
        counts[str(state)] = int(n)
    return counts


def queue_depth(session: Session) -> dict[str, int]:
    """The queue as /api/health reports it: series waiting (queued), processing, failed."""
    counts = series_state_counts(session)
    return {"waiting": counts["queued"], "processing": counts["processing"], "failed": counts["failed"]}


def study_status_counts(session: Session) -> dict[str, int]:
    """How many studies have each derived status."""
    counts_sq = _series_counts().subquery()
    status = status_expression(counts_sq).label("status")
    inner = select(status).select_from(Study).outerjoin(counts_sq, counts_sq.c.study_id == Study.id).subquery()
    out = dict.fromkeys(STUDY_STATUSES, 0)
    for st, n in session.execute(select(inner.c.status, func.count()).group_by(inner.c.status)):
        out[str(st)] = int(n)
    return out


def alert_state_counts(session: Session) -> dict[str, int]:
    """How many outbox rows are in each state."""
    out = {"pending": 0, "sent": 0, "dead": 0, "cancelled": 0}
    for state, n in session.execute(select(Alert.state, func.count()).group_by(Alert.state)):
        out[str(state)] = int(n)
    return out


# -- admin ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdEffect:
    """How many recent studies a set of thresholds would flag, per class and in all."""

    studies: int
    per_class: dict[str, int]
    flagged: int
    currently_flagged: int
    since: dt.datetime


def recent_study_probabilities(session: Session, since: dt.datetime, limit: int = 2000) -> list[dict[str, float]]:
    """Study-level probabilities (per class max over series results) of studies received since ``since``."""
    columns = [func.max(getattr(SeriesResult, c)).label(c) for c in _PROB_COLUMNS]
    rows = session.execute(
        select(Study.id, *columns)
        .join(Series, Series.study_id == Study.id)
        .join(SeriesResult, SeriesResult.series_id == Series.id)
        .where(Study.first_received_at >= since)
        .group_by(Study.id)
        .order_by(Study.id.desc())
        .limit(limit)
    ).all()
    return [{name: float(p) for name, p in zip(CLASSES, row[1:], strict=True)} for row in rows]


def threshold_effect(session: Session, thresholds: Mapping[str, float], enabled: Mapping[str, bool],
                     *, since: dt.datetime, limit: int = 2000) -> ThresholdEffect:
    """What ``thresholds`` would flag among the classified studies received since ``since``.

    ``per_class`` counts studies at or above each class's threshold (switch ignored);
    ``flagged`` counts studies that at least one enabled class would flag.
    """
    studies = recent_study_probabilities(session, since, limit)
    per_class = {name: sum(1 for p in studies if p[name] >= thresholds[name]) for name in CLASSES}
    flagged = sum(1 for p in studies if apply_thresholds(p, thresholds, enabled))
    current = session.scalar(
        select(func.count()).select_from(Study).where(Study.first_received_at >= since, Study.flagged.is_(True))
    )
    return ThresholdEffect(len(studies), per_class, flagged, int(current or 0), since)


def users(session: Session) -> list[User]:
    """Every user, by name."""
    return list(session.scalars(select(User).order_by(User.username)))


def api_tokens(session: Session) -> list[tuple[ApiToken, str]]:
    """Every API token with its user's name, newest first."""
    rows = session.execute(
        select(ApiToken, User.username).join(User, User.id == ApiToken.user_id).order_by(ApiToken.id.desc())
    ).all()
    return [(token, name) for token, name in rows]


def audit_log(session: Session, *, limit: int = 100, offset: int = 0) -> tuple[list[AuditEvent], int]:
    """The newest audit events and how many there are in all."""
    total = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
    events = session.scalars(
        select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit).offset(offset)
    ).all()
    return list(events), int(total)


def alerts_in_state(session: Session, states: Sequence[str], *, limit: int = 50) -> list[tuple[Alert, str]]:
    """Outbox rows in ``states`` (newest first) with their study's UID."""
    rows = session.execute(
        select(Alert, Study.study_uid)
        .join(Study, Study.id == Alert.study_id)
        .where(Alert.state.in_(states))
        .order_by(Alert.created_at.desc(), Alert.id.desc())
        .limit(limit)
    ).all()
    return [(alert, uid) for alert, uid in rows]
