"""The JSON shapes of the API (DESIGN.md section 4), as pydantic models so the OpenAPI document is exact."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from triage.db.queries import SeriesDetail, SlicePoint, StudyDetail, WorklistItem
from triage.domain import SUBTYPES

StudyStatus = Literal["receiving", "queued", "processing", "classified", "failed", "not_analysed"]
SeriesStateName = Literal["receiving", "queued", "processing", "classified", "failed", "not_analysed"]
Subtype = Literal["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]
ClassName = Literal["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]


class Probabilities(BaseModel):
    """Probability per class; null where nothing was classified yet."""

    any: float | None = Field(None, ge=0, le=1)
    epidural: float | None = Field(None, ge=0, le=1)
    intraparenchymal: float | None = Field(None, ge=0, le=1)
    intraventricular: float | None = Field(None, ge=0, le=1)
    subarachnoid: float | None = Field(None, ge=0, le=1)
    subdural: float | None = Field(None, ge=0, le=1)


class SliceProbabilities(BaseModel):
    """Probability per class of one slice."""

    any: float = Field(ge=0, le=1)
    epidural: float = Field(ge=0, le=1)
    intraparenchymal: float = Field(ge=0, le=1)
    intraventricular: float = Field(ge=0, le=1)
    subarachnoid: float = Field(ge=0, le=1)
    subdural: float = Field(ge=0, le=1)


class StudyItem(BaseModel):
    """One worklist entry (the fields of the contract first, then extras)."""

    model_config = ConfigDict(from_attributes=True)

    study_uid: str
    accession_number: str
    patient_id: str
    study_description: str
    received_at: dt.datetime = Field(description="first slice received (ISO 8601, UTC)")
    status: StudyStatus
    priority: Literal["critical", "routine"]
    score: float = Field(ge=0, le=1)
    flagged: bool
    probabilities: Probabilities
    subtypes: list[Subtype]
    num_instances: int
    key_instance_uid: str | None
    acknowledged: bool
    model_version: str | None
    error: str | None
    patient_name: str
    last_received_at: dt.datetime
    status_reason: str | None = Field(description="why the study failed or is not analysed")
    num_series: int
    acknowledged_at: dt.datetime | None
    acknowledged_by: str | None
    classified_at: dt.datetime | None
    alerted_at: dt.datetime | None
    provisional: bool = Field(description="the result covers the slices received so far only")

    @classmethod
    def of(cls, item: WorklistItem) -> StudyItem:
        """Build from a query row."""
        return cls.model_validate(item)


class Worklist(BaseModel):
    """``GET /api/worklist``."""

    studies: list[StudyItem]
    total: int = Field(description="studies matching the filter (the list holds at most `limit`)")


class Slice(BaseModel):
    """One slice's probabilities and position."""

    sop_instance_uid: str
    instance_number: int | None
    z_position: float | None
    probabilities: SliceProbabilities

    @classmethod
    def of(cls, point: SlicePoint) -> Slice:
        """Build from a query row."""
        return cls(sop_instance_uid=point.sop_instance_uid, instance_number=point.instance_number,
                   z_position=point.z_position, probabilities=SliceProbabilities(**point.probabilities))


class KeyImage(BaseModel):
    """A rendered key slice with its heat map."""

    id: int
    sop_instance_uid: str
    kind: str
    url: str


class SeriesResult(BaseModel):
    """Aggregated findings of one series."""

    probabilities: SliceProbabilities
    flagged_classes: list[ClassName]
    key_instance_uid: str | None
    model_version: str
    provisional: bool
    error: str | None
    num_slices: int
    timings: dict[str, float]
    created_at: dt.datetime


class SeriesOut(BaseModel):
    """One series with its queue state, per-stage times, result and slices."""

    series_uid: str
    series_number: int | None
    series_description: str
    state: SeriesStateName
    state_reason: str | None
    num_instances: int
    first_received_at: dt.datetime
    last_received_at: dt.datetime
    ready_at: dt.datetime | None
    processing_started_at: dt.datetime | None
    classified_at: dt.datetime | None
    result: SeriesResult | None
    slices: list[Slice]
    key_images: list[KeyImage]

    @classmethod
    def of(cls, series: SeriesDetail) -> SeriesOut:
        """Build from a query row."""
        r = series.result
        result = None
        if r is not None:
            result = SeriesResult(
                probabilities=SliceProbabilities(**r.probabilities()), flagged_classes=list(r.flagged_classes or []),
                key_instance_uid=r.key_instance_uid, model_version=r.model_version, provisional=r.provisional,
                error=r.error, num_slices=r.num_slices, timings=dict(r.timings or {}), created_at=r.created_at,
            )
        return cls(
            series_uid=series.series_uid, series_number=series.series_number,
            series_description=series.series_description, state=series.state,
            state_reason=series.state_reason, num_instances=series.num_instances,
            first_received_at=series.first_received_at, last_received_at=series.last_received_at,
            ready_at=series.ready_at, processing_started_at=series.processing_started_at,
            classified_at=series.classified_at, result=result, slices=[Slice.of(p) for p in series.slices],
            key_images=[KeyImage(id=i.id, sop_instance_uid=i.sop_instance_uid, kind=i.kind,
                                 url=f"/api/key-images/{i.id}") for i in series.key_images],
        )


class Feedback(BaseModel):
    """A radiologist's verdict on the study's findings."""

    agree: bool = Field(description="whether the finding (flagged or not) was right")
    true_subtypes: list[Subtype] = Field(default_factory=list, description="the subtypes actually present")
    comment: str = Field("", max_length=2000, pattern=r"^[^\x00]*$")


class FeedbackOut(Feedback):
    """Stored feedback."""

    username: str
    created_at: dt.datetime


class StageTimes(BaseModel):
    """When each stage happened (null: not yet)."""

    first_received: dt.datetime
    last_received: dt.datetime
    ready: dt.datetime | None
    processing_started: dt.datetime | None
    classified: dt.datetime | None
    alert_sent: dt.datetime | None
    acknowledged: dt.datetime | None


class StudyOut(StudyItem):
    """``GET /api/studies/{study_uid}``: the worklist entry plus series, slices, times and feedback."""

    series: list[SeriesOut]
    stages: StageTimes
    feedback: list[FeedbackOut]

    @classmethod
    def of_detail(cls, detail: StudyDetail) -> StudyOut:
        """Build from a query row."""
        base = StudyItem.of(detail.item).model_dump()
        return cls(
            **base,
            series=[SeriesOut.of(s) for s in detail.series],
            stages=StageTimes(**detail.stage_times()),
            feedback=[FeedbackOut(agree=f.agree, true_subtypes=[t for t in f.true_subtypes if t in SUBTYPES],
                                  comment=f.comment, username=f.username, created_at=f.created_at)
                      for f in detail.feedback],
        )


class Ack(BaseModel):
    """The acknowledgement of a study."""

    study_uid: str
    acknowledged: bool
    acknowledged_at: dt.datetime
    acknowledged_by: str


class Queue(BaseModel):
    """Series waiting for, in, and failed in classification."""

    waiting: int
    processing: int
    failed: int


class ModelInfo(BaseModel):
    """The model the worker is configured with (the web loads none)."""

    configured: str | None


class Health(BaseModel):
    """``GET /api/health``: 200 when ok, 503 with the same shape when degraded."""

    status: Literal["ok", "degraded"]
    database: Literal["ok", "unreachable"]
    model: ModelInfo | None
    queue: Queue | None = Field(description="null when the database is unreachable")
    version: str


class ThresholdEffect(BaseModel):
    """How many recent classified studies a set of thresholds would flag."""

    since: dt.datetime
    studies: int
    per_class: dict[str, int]
    flagged: int
    currently_flagged: int


class Problem(BaseModel):
    """An error answer."""

    detail: str
