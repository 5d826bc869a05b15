"""The JSON API of DESIGN.md section 4, the key-image files, and /metrics."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from triage import __version__
from triage.db import queries
from triage.db.models import utcnow
from triage.db.thresholds import load_thresholds
from triage.domain import CLASSES
from triage.web import actions, schemas
from triage.web.deps import AdminDep, ContextDep, ReaderDep, ReaderWriteDep, SessionDep
from triage.web.metrics import exposition

LOGGER = logging.getLogger(__name__)

router = APIRouter()

UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"
StudyUid = Annotated[str, Path(pattern=UID_PATTERN, max_length=64, description="Study Instance UID")]
TEXT_PATTERN = r"^[^\x00-\x1f]*$"

_problem: dict[str, Any] = {"model": schemas.Problem}
AUTH: dict[int | str, dict[str, Any]] = {401: {**_problem, "description": "no session or API token"},
        403: {**_problem, "description": "the role may not do this, or the CSRF token is missing"}}
AUTH_404: dict[int | str, dict[str, Any]] = {**AUTH, 404: {**_problem, "description": "no such study"}}


@router.get("/api/health", response_model=schemas.Health, tags=["system"],
            responses={503: {"model": schemas.Health, "description": "degraded: the database is unreachable"}})
def health(context: ContextDep) -> JSONResponse:
    """Liveness and the queue: 200 ``ok``, or 503 ``degraded`` (same shape) when the database is unreachable."""
    model = context.settings.model
    queue: schemas.Queue | None = None
    try:
        with context.factory() as session:
            session.execute(text("SELECT 1"))
            queue = schemas.Queue(**queries.queue_depth(session))
    except SQLAlchemyError as exc:
        LOGGER.warning("health: the database is unreachable (%s)", type(exc).__name__)
    body = schemas.Health(
        status="ok" if queue is not None else "degraded",
        database="ok" if queue is not None else "unreachable",
        model=schemas.ModelInfo(configured=str(model) if model else None),
        queue=queue,
        version=__version__,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if queue is not None else 503)


@router.get("/api/worklist", response_model=schemas.Worklist, tags=["worklist"], responses=AUTH)
def worklist(
    principal: ReaderDep,
    session: SessionDep,
    flagged: Annotated[bool | None, Query(description="only flagged (true) or unflagged (false) studies")] = None,
    status: Annotated[schemas.StudyStatus | None, Query(description="only studies with this status")] = None,
    date_from: Annotated[dt.date | None, Query(description="received on or after this day (UTC)")] = None,
    date_to: Annotated[dt.date | None, Query(description="received on or before this day (UTC)")] = None,
    q: Annotated[str | None, Query(max_length=64, pattern=TEXT_PATTERN,
                                   description="text in accession, patient ID/name or description")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> schemas.Worklist:
    """Studies, highest priority first: flagged and unacknowledged, then by score, then oldest."""
    filt = queries.WorklistFilter(flagged=flagged, status=status, date_from=date_from, date_to=date_to, search=q)
    page = queries.worklist(session, filt, limit=limit, offset=offset)
    return schemas.Worklist(studies=[schemas.StudyItem.of(i) for i in page.items], total=page.total)


@router.get("/api/studies/{study_uid}", response_model=schemas.StudyOut, tags=["studies"], responses=AUTH_404)
def study(study_uid: StudyUid, principal: ReaderDep, session: SessionDep) -> schemas.StudyOut:
    """One study with its series, per-slice predictions, key images, stage times and feedback."""
    detail = queries.study_detail(session, study_uid)
    if detail is None:
        raise HTTPException(404, f"no study with UID {study_uid!r}")
    return schemas.StudyOut.of_detail(detail)


@router.post("/api/studies/{study_uid}/ack", response_model=schemas.Ack, tags=["studies"], responses=AUTH_404)
def acknowledge(study_uid: StudyUid, principal: ReaderWriteDep, session: SessionDep) -> schemas.Ack:
    """Acknowledge the study's alert (stops escalation). Repeating it keeps the first acknowledgement."""
    try:
        row = actions.acknowledge(session, study_uid, principal.username)
    except actions.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    assert row.acknowledged_at is not None and row.acknowledged_by is not None
    return schemas.Ack(study_uid=row.study_uid, acknowledged=True, acknowledged_at=row.acknowledged_at,
                       acknowledged_by=row.acknowledged_by)


@router.post("/api/studies/{study_uid}/feedback", response_model=schemas.FeedbackOut, status_code=201,
             tags=["studies"], responses=AUTH_404)
def feedback(study_uid: StudyUid, body: schemas.Feedback, principal: ReaderWriteDep,
             session: SessionDep) -> schemas.FeedbackOut:
    """Record whether the finding was right and which subtypes were really present (for QA)."""
    try:
        row = actions.add_feedback(session, study_uid, principal.username, agree=body.agree,
                                   true_subtypes=body.true_subtypes, comment=body.comment)
    except actions.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return schemas.FeedbackOut(agree=row.agree, true_subtypes=row.true_subtypes, comment=row.comment,
                               username=row.username, created_at=row.created_at)


@router.get("/api/key-images/{image_id}", response_class=FileResponse, tags=["studies"],
            responses={**AUTH, 404: {**_problem, "description": "no such image"},
                       200: {"content": {"image/png": {}}, "description": "the PNG"}})
def key_image(image_id: Annotated[int, Path(ge=1, le=2**31 - 1)], principal: ReaderDep, session: SessionDep,
              context: ContextDep) -> FileResponse:
    """A stored key image (windowed slice with the heat map), as rendered by the worker."""
    row = queries.key_image(session, image_id)
    path = _stored_file(context.settings.store, row.path) if row is not None else None
    if path is None:
        raise HTTPException(404, f"no key image {image_id}")
    return FileResponse(path, media_type="image/png")


def _stored_file(store: FsPath, relative: str) -> FsPath | None:
    """``store / relative`` if it is a file inside the store (no way out through ``..`` or links)."""
    root = store.resolve()
    try:
        path = (root / relative).resolve()
    except (OSError, ValueError):
        return None
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


_CLASS = "(" + "|".join(CLASSES) + ")"
CLASS_LIST = f"^({_CLASS}(,{_CLASS})*)?$"
Probability = Annotated[float | None, Query(ge=0, le=1)]


@router.get("/api/admin/threshold-effect", response_model=schemas.ThresholdEffect, tags=["admin"],
            responses=AUTH)
def threshold_effect(
    principal: AdminDep,
    session: SessionDep,
    t_any: Annotated[float | None, Query(alias="any", ge=0, le=1)] = None,
    epidural: Probability = None,
    intraparenchymal: Probability = None,
    intraventricular: Probability = None,
    subarachnoid: Probability = None,
    subdural: Probability = None,
    days: Annotated[int, Query(ge=1, le=365, description="look at studies received in the last N days")] = 30,
    disabled: Annotated[str | None, Query(pattern=CLASS_LIST, max_length=200,
                                          description="comma-separated classes whose alert would be off "
                                                      "(empty: none; absent: as stored)")] = None,
) -> schemas.ThresholdEffect:
    """How many recent studies these thresholds would flag (a class not given keeps its stored threshold)."""
    current, enabled = load_thresholds(session)
    proposed = {"any": t_any, "epidural": epidural, "intraparenchymal": intraparenchymal,
                "intraventricular": intraventricular, "subarachnoid": subarachnoid, "subdural": subdural}
    thresholds = {name: value for name, value in current.items()}
    thresholds.update({name: value for name, value in proposed.items() if value is not None})
    if disabled is not None:
        off = set(disabled.split(",")) if disabled else set()
        enabled = {name: name not in off for name in CLASSES}
    since = utcnow() - dt.timedelta(days=days)
    effect = queries.threshold_effect(session, _complete(thresholds), enabled, since=since)
    return schemas.ThresholdEffect(since=effect.since, studies=effect.studies, per_class=effect.per_class,
                                   flagged=effect.flagged, currently_flagged=effect.currently_flagged)


def _complete(thresholds: dict[str, float]) -> dict[str, float]:
    """Every class present (a class without a stored row never flags: threshold above 1)."""
    return {name: thresholds.get(name, 2.0) for name in CLASSES}


@router.get("/metrics", tags=["system"], response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
def metrics(request: Request) -> Response:
    """Prometheus metrics: ingest, classification and alert counters of this process, and database gauges."""
    body: Any = exposition(request.app.state.metrics_registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
