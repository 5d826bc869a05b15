"""SQLAlchemy 2.x models of every table of triage. The schema itself is created only by Alembic."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from triage.domain import SeriesState

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

UID = String(64)


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC (what every timestamp column stores)."""
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store timezone-aware UTC times")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so constraint names agree on SQLite and PostgreSQL."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Study(Base):
    """One imaging study (Study Instance UID); its summary columns are written by the worker."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_uid: Mapped[str] = mapped_column(UID, unique=True)
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    patient_name: Mapped[str] = mapped_column(String(324), default="")
    accession_number: Mapped[str] = mapped_column(String(64), default="")
    study_description: Mapped[str] = mapped_column(String(128), default="")
    study_date: Mapped[str] = mapped_column(String(8), default="")
    calling_aet: Mapped[str] = mapped_column(String(16), default="")
    first_received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    # summary of the latest results, kept by the worker in the same transaction as the results
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[str] = mapped_column(String(16), default="routine")
    score: Mapped[float] = mapped_column(Float, default=0.0)
    classified_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    alerted_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))

    series: Mapped[list[Series]] = relationship(
        back_populates="study", order_by="Series.id", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (Index("ix_studies_worklist", "flagged", "score", "first_received_at"),)


class Series(Base):
    """One series of a study, with its queue state, lease and per-stage timestamps."""

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    series_uid: Mapped[str] = mapped_column(UID, unique=True)
    series_number: Mapped[int | None] = mapped_column(Integer)
    series_description: Mapped[str] = mapped_column(String(128), default="")
    body_part: Mapped[str] = mapped_column(String(64), default="")
    modality: Mapped[str] = mapped_column(String(16), default="CT")
    slice_thickness: Mapped[float | None] = mapped_column(Float)
    image_type: Mapped[str] = mapped_column(String(128), default="")
    expected_instances: Mapped[int | None] = mapped_column(Integer)
    num_instances: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default=SeriesState.RECEIVING.value, index=True)
    state_reason: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    processed_instances: Mapped[int] = mapped_column(Integer, default=0)
    first_received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    ready_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    processing_started_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    classified_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(
        back_populates="series", order_by="Instance.id", cascade="all, delete-orphan", passive_deletes=True
    )
    result: Mapped[SeriesResult | None] = relationship(
        back_populates="series", uselist=False, cascade="all, delete-orphan", passive_deletes=True
    )


class Instance(Base):
    """One stored slice: the file in the DICOM store and what the header said."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    transfer_syntax_uid: Mapped[str] = mapped_column(UID, default="")
    path: Mapped[str] = mapped_column(String(400))
    size_bytes: Mapped[int] = mapped_column(Integer)
    instance_number: Mapped[int | None] = mapped_column(Integer)
    z_position: Mapped[float | None] = mapped_column(Float)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    decode_error: Mapped[str | None] = mapped_column(Text)

    series: Mapped[Series] = relationship(back_populates="instances")


class _Probabilities:
    """The six probabilities, in the order of ``triage.domain.CLASSES``."""

    p_any: Mapped[float] = mapped_column(Float)
    p_epidural: Mapped[float] = mapped_column(Float)
    p_intraparenchymal: Mapped[float] = mapped_column(Float)
    p_intraventricular: Mapped[float] = mapped_column(Float)
    p_subarachnoid: Mapped[float] = mapped_column(Float)
    p_subdural: Mapped[float] = mapped_column(Float)

    def probabilities(self) -> dict[str, float]:
        """The probabilities as a ``{class: p}`` mapping."""
        from triage.domain import CLASSES

        return {name: float(getattr(self, f"p_{name}")) for name in CLASSES}


class SlicePrediction(_Probabilities, Base):
    """The model's output for one slice."""

    __tablename__ = "slice_predictions"

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    model_version: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("instance_id", "model_version"),)


class SeriesResult(_Probabilities, Base):
    """Aggregated findings of one series (one row per series; reprocessing replaces it)."""

    __tablename__ = "series_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), unique=True)
    model_version: Mapped[str] = mapped_column(String(128))
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    flagged_classes: Mapped[list[str]] = mapped_column(JSON, default=list)
    priority: Mapped[str] = mapped_column(String(16), default="routine")
    score: Mapped[float] = mapped_column(Float, default=0.0)
    key_instance_uid: Mapped[str | None] = mapped_column(UID)
    provisional: Mapped[bool] = mapped_column(Boolean, default=False)
    num_slices: Mapped[int] = mapped_column(Integer, default=0)
    num_undecodable: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    timings: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)

    series: Mapped[Series] = relationship(back_populates="result")


class KeyImage(Base):
    """A rendered key slice (windowed PNG with activation heat map) stored under the storage dir."""

    __tablename__ = "key_images"

    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID)
    path: Mapped[str] = mapped_column(String(400))
    kind: Mapped[str] = mapped_column(String(32), default="heatmap")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Threshold(Base):
    """Admin-editable alert threshold and switch for one class."""

    __tablename__ = "thresholds"

    class_name: Mapped[str] = mapped_column(String(32), primary_key=True)
    threshold: Mapped[float] = mapped_column(Float)
    alert_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(64), default="system")


class AdminSetting(Base):
    """A setting the admin page changes at run time (allowed AEs, channel switches), as JSON."""

    __tablename__ = "admin_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(64), default="system")


class Alert(Base):
    """The alert outbox: written with the results, sent by the dispatcher (at least once)."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16), default="alert")
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_alerts_due", "state", "next_attempt_at"),)


class AuditEvent(Base):
    """Who did what, when, to what: changes, acknowledgements, logins, alert sends."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class User(Base):
    """A web user with a scrypt password hash and a role."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete-orphan")


class ApiToken(Base):
    """An API token for integrations, stored as a SHA-256 hash."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    user: Mapped[User] = relationship(back_populates="tokens")


class Feedback(Base):
    """A radiologist's verdict on a study's findings, kept for quality assurance."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    username: Mapped[str] = mapped_column(String(64))
    agree: Mapped[bool] = mapped_column(Boolean)
    true_subtypes: Mapped[list[str]] = mapped_column(JSON, default=list)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
