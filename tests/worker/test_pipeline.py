"""The classify pipeline and the worker jobs, on phantoms stored through the real ingest path."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from tests.worker.conftest import set_thresholds, store_datasets
from triage.db.engine import transaction
from triage.db.models import Alert, Instance, KeyImage, Series, SeriesResult, SlicePrediction, Study, utcnow
from triage.synth.study import make_study
from triage.worker import jobs


def _series(factory) -> Series:
    with factory() as s:
        return s.scalars(select(Series)).one()


def _count(factory, model) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model))


def _make_ready(ctx) -> None:
    later = utcnow() + dt.timedelta(seconds=ctx.settings.series.quiet_seconds + 1)
    with transaction(ctx.factory) as s:
        from triage.db import ingest

        ingest.mark_ready(s, ctx.settings.series, later)


def _with_webhook(ctx):
    alerts = ctx.settings.alerts.model_copy(
        update={"webhook": ctx.settings.alerts.webhook.model_copy(update={"url": "http://127.0.0.1:9/hook"})}
    )
    ctx.settings = ctx.settings.model_copy(update={"alerts": alerts, "worker": ctx.settings.worker.model_copy(
        update={"streaming": False})})
    ctx.pipeline.settings = ctx.settings
    return ctx


def test_stored_series_is_classified_with_results_key_images_and_alert(ctx, phantom) -> None:
    ctx = _with_webhook(ctx)
    set_thresholds(ctx.factory, 0.0)  # an untrained model: flag everything
    assert set(store_datasets(ctx.settings, ctx.factory, phantom.datasets)) == {0}
    _make_ready(ctx)
    assert _series(ctx.factory).state == "queued"

    assert jobs.work(ctx) == 1

    series = _series(ctx.factory)
    assert series.state == "classified" and series.classified_at is not None
    assert series.processed_instances == 12
    with ctx.factory() as s:
        result = s.scalars(select(SeriesResult)).one()
        study = s.scalars(select(Study)).one()
        assert result.num_slices == 12 and not result.provisional and result.flagged
        assert result.flagged_classes[0] == "any" and study.flagged and study.priority == "critical"
        assert result.key_instance_uid in {ds.SOPInstanceUID for ds in phantom.datasets}
        assert set(result.timings) >= {"preprocess", "stage1", "stage2", "database"}
        assert s.scalar(select(func.count()).select_from(SlicePrediction)) == 12
        # P(subtype) never exceeds P(any)
        for p in s.scalars(select(SlicePrediction)):
            assert max(p.probabilities().values()) == pytest.approx(p.p_any)
        alerts = s.scalars(select(Alert)).all()
        assert [a.channel for a in alerts] == ["webhook"]
        images = s.scalars(select(KeyImage)).all()
    assert images and images[0].sop_instance_uid == result.key_instance_uid
    png = Image.open(ctx.settings.store / images[0].path)
    assert png.format == "PNG" and png.size == (448, 448) and png.mode == "RGB"


def test_negative_result_routine_and_no_alert(ctx, phantom) -> None:
    ctx = _with_webhook(ctx)
    set_thresholds(ctx.factory, 1.01)
    store_datasets(ctx.settings, ctx.factory, phantom.datasets)
    _make_ready(ctx)
    jobs.work(ctx)
    with ctx.factory() as s:
        result = s.scalars(select(SeriesResult)).one()
        assert not result.flagged and result.priority == "routine"
        assert s.scalar(select(func.count()).select_from(Alert)) == 0


def test_streaming_flags_while_receiving_then_final(ctx, phantom) -> None:
    set_thresholds(ctx.factory, 0.0)
    first, rest = phantom.datasets[:5], phantom.datasets[5:]
    store_datasets(ctx.settings, ctx.factory, first)
    assert _series(ctx.factory).state == "receiving"
    assert ctx.pipeline.stream() == 5
    with ctx.factory() as s:
        result = s.scalars(select(SeriesResult)).one()
        assert result.provisional and result.flagged and result.num_slices == 5
        assert s.scalars(select(Study)).one().flagged
    assert ctx.pipeline.stream() == 0  # nothing new
    store_datasets(ctx.settings, ctx.factory, rest)
    _make_ready(ctx)
    jobs.work(ctx)
    with ctx.factory() as s:
        result = s.scalars(select(SeriesResult)).one()
        assert not result.provisional and result.num_slices == 12
        assert s.scalar(select(func.count()).select_from(SlicePrediction)) == 12
    assert _series(ctx.factory).state == "classified"


def test_streaming_counts_a_flag_once_and_refreshes_the_provisional_result(ctx, phantom, caplog) -> None:
    set_thresholds(ctx.factory, 0.0)
    flags_before = REGISTRY.get_sample_value("triage_time_to_flag_seconds_count") or 0.0
    with caplog.at_level(logging.INFO, logger="triage.worker.pipeline"):
        for part in (phantom.datasets[:4], phantom.datasets[4:8]):
            store_datasets(ctx.settings, ctx.factory, part)
            assert ctx.pipeline.stream() == 4
    with ctx.factory() as s:
        assert s.scalars(select(SeriesResult)).one().num_slices == 8  # refreshed by the second batch
    assert REGISTRY.get_sample_value("triage_time_to_flag_seconds_count") == flags_before + 1
    assert sum("flagged provisionally" in r.getMessage() for r in caplog.records) == 1
    store_datasets(ctx.settings, ctx.factory, phantom.datasets[8:])
    _make_ready(ctx)
    jobs.work(ctx)
    assert REGISTRY.get_sample_value("triage_time_to_flag_seconds_count") == flags_before + 1  # already flagged


def test_reprocessing_replaces_results(ctx, phantom) -> None:
    store_datasets(ctx.settings, ctx.factory, phantom.datasets)
    _make_ready(ctx)
    jobs.work(ctx)
    with ctx.factory() as s:
        before = s.scalars(select(SeriesResult)).one().probabilities()
    with transaction(ctx.factory) as s:
        s.scalars(select(Series)).one().state = "queued"
    jobs.work(ctx)
    assert _count(ctx.factory, SeriesResult) == 1
    assert _count(ctx.factory, SlicePrediction) == 12
    with ctx.factory() as s:
        assert s.scalars(select(SeriesResult)).one().probabilities() == pytest.approx(before)


def test_late_slice_queues_the_series_again(ctx, phantom) -> None:
    store_datasets(ctx.settings, ctx.factory, phantom.datasets[:-1])
    _make_ready(ctx)
    jobs.work(ctx)
    assert _series(ctx.factory).state == "classified"
    store_datasets(ctx.settings, ctx.factory, phantom.datasets[-1:])
    assert _series(ctx.factory).state in ("receiving", "queued")
    _make_ready(ctx)
    jobs.work(ctx)
    series = _series(ctx.factory)
    assert series.state == "classified" and series.processed_instances == 12
    with ctx.factory() as s:
        assert s.scalars(select(SeriesResult)).one().num_slices == 12


def test_corrupt_and_missing_slices_are_recorded_and_skipped(ctx, phantom) -> None:
    store_datasets(ctx.settings, ctx.factory, phantom.datasets)
    with ctx.factory() as s:
        paths = [ctx.settings.store / p for p in s.scalars(select(Instance.path).order_by(Instance.id))]
    paths[2].write_bytes(paths[2].read_bytes()[:3000])  # truncated
    paths[5].unlink()  # gone
    _make_ready(ctx)
    jobs.work(ctx)
    assert _series(ctx.factory).state == "classified"
    with ctx.factory() as s:
        result = s.scalars(select(SeriesResult)).one()
        assert result.num_slices == 10 and result.num_undecodable == 2
        errors = s.scalars(select(Instance.decode_error).where(Instance.decode_error.is_not(None))).all()
    assert len(errors) == 2 and all(errors)


def test_no_decodable_slice_fails_with_reason(ctx, phantom) -> None:
    store_datasets(ctx.settings, ctx.factory, phantom.datasets)
    with ctx.factory() as s:
        for path in s.scalars(select(Instance.path)):
            (ctx.settings.store / path).write_bytes(b"garbage")
    _make_ready(ctx)
    jobs.work(ctx)
    series = _series(ctx.factory)
    assert series.state == "failed" and "no slice" in series.state_reason


class Exploding:
    """A model that raises, as a broken model file or an out-of-memory would."""

    def __init__(self, real) -> None:
        self.real = real

    def __getattr__(self, name: str):
        return getattr(self.real, name)

    def detect(self, x: np.ndarray) -> np.ndarray:
        raise RuntimeError("CUDA out of memory (simulated)")


def test_model_that_raises_fails_after_attempts_and_worker_goes_on(ctx, phantom) -> None:
    store_datasets(ctx.settings, ctx.factory, phantom.datasets)
    other = make_study(8, slices=10)
    store_datasets(ctx.settings, ctx.factory, other.datasets)
    _make_ready(ctx)
    real = ctx.pipeline.classifier
    ctx.pipeline.classifier = Exploding(real)
    jobs.work(ctx)  # both series fail after max_attempts tries each
    with ctx.factory() as s:
        states = {r.state for r in s.scalars(select(Series))}
        reasons = [r.state_reason for r in s.scalars(select(Series))]
    assert states == {"failed"}
    assert all("CUDA out of memory (simulated)" in r and "after 3 attempts" in r for r in reasons)


def test_purge_removes_old_finished_studies_only(ctx, phantom) -> None:
    store_datasets(ctx.settings, ctx.factory, phantom.datasets)
    _make_ready(ctx)
    jobs.work(ctx)
    assert jobs.purge(ctx) == 0  # retention off by default
    ctx.settings = ctx.settings.model_copy(
        update={"worker": ctx.settings.worker.model_copy(update={"retention_days": 1})}
    )
    assert jobs.purge(ctx, utcnow()) == 0  # not old yet
    files = list(Path(ctx.settings.store).rglob("*.dcm"))
    assert len(files) == 12
    assert jobs.purge(ctx, utcnow() + dt.timedelta(days=2)) == 1
    assert not list(Path(ctx.settings.store).rglob("*.dcm"))
    assert _count(ctx.factory, Study) == 0 and _count(ctx.factory, Instance) == 0
