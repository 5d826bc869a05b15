"""The database side of ingest (triage.db.ingest): rows, duplicates, late slices, quiet time, gate."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select

from triage.config import SeriesSettings
from triage.db.ingest import InstanceHeader, mark_ready, record_instance
from triage.db.models import Instance, Series, Study
from triage.domain import SeriesState

T0 = dt.datetime(2024, 1, 2, 10, 0, tzinfo=dt.UTC)
SETTINGS = SeriesSettings(min_slices=3, quiet_seconds=10)


def header(k: int, series: str = "1.2.3.4", expected: int | None = None, **extra) -> InstanceHeader:
    values = {
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2", "sop_instance_uid": f"{series}.{k}", "study_uid": "1.2.3",
        "series_uid": series, "transfer_syntax_uid": "1.2.840.10008.1.2.1", "patient_id": "P1",
        "body_part": "HEAD", "image_type": "ORIGINAL\\PRIMARY\\AXIAL", "instance_number": k,
        "z_position": 5.0 * k, "expected_instances": expected, **extra,
    }
    return InstanceHeader(**values)


def record(factory, h: InstanceHeader, now: dt.datetime = T0, settings: SeriesSettings = SETTINGS):
    with factory() as session, session.begin():
        return record_instance(session, h, path=f"{h.study_uid}/{h.series_uid}/{h.sop_instance_uid}.dcm",
                               size_bytes=100, calling_aet="CT1", now=now, series_settings=settings)


def series_row(factory, uid: str = "1.2.3.4") -> Series:
    with factory() as session:
        return session.scalars(select(Series).where(Series.series_uid == uid)).one()


def set_series_state(factory, state: SeriesState) -> None:
    with factory() as session, session.begin():
        session.scalars(select(Series)).one().state = state.value


def test_an_instance_creates_study_series_and_instance_rows(factory) -> None:
    result = record(factory, header(1, patient_name="Doe^J", accession_number="A1", study_description="HEAD",
                                    series_description="AX", series_number=3, slice_thickness=5.0))
    assert (result.duplicate, result.state) == (False, SeriesState.RECEIVING)
    with factory() as session:
        study = session.scalars(select(Study)).one()
        series = session.scalars(select(Series)).one()
        instance = session.scalars(select(Instance)).one()
    assert (study.study_uid, study.patient_id, study.patient_name, study.accession_number) == ("1.2.3", "P1",
                                                                                              "Doe^J", "A1")
    assert (study.calling_aet, study.first_received_at, study.last_received_at) == ("CT1", T0, T0)
    assert (series.series_number, series.series_description, series.slice_thickness) == (3, "AX", 5.0)
    assert (series.num_instances, series.state, series.first_received_at) == (1, "receiving", T0)
    assert (instance.path, instance.size_bytes, instance.z_position, instance.instance_number) == (
        "1.2.3/1.2.3.4/1.2.3.4.1.dcm", 100, 5.0, 1)


def test_a_repeated_sop_instance_uid_is_a_duplicate(factory) -> None:
    record(factory, header(1))
    again = record(factory, header(1), now=T0 + dt.timedelta(seconds=1))
    assert again.duplicate and again.path == "1.2.3/1.2.3.4/1.2.3.4.1.dcm"
    assert series_row(factory).num_instances == 1


def test_long_header_values_are_cut_to_their_columns(factory) -> None:
    record(factory, header(1, study_description="x" * 500, patient_name="y" * 1000, image_type="Z" * 300))
    with factory() as session:
        study = session.scalars(select(Study)).one()
    assert len(study.study_description) == 128 and len(study.patient_name) == 324
    assert len(series_row(factory).image_type) == 128


@pytest.mark.parametrize("state", [SeriesState.CLASSIFIED, SeriesState.FAILED, SeriesState.QUEUED])
def test_a_late_slice_reopens_a_finished_or_queued_series(factory, state: SeriesState) -> None:
    record(factory, header(1))
    set_series_state(factory, state)
    assert record(factory, header(2)).state is SeriesState.RECEIVING
    series = series_row(factory)
    assert (series.state, series.num_instances, series.ready_at) == ("receiving", 2, None)


def test_a_slice_during_processing_only_counts(factory) -> None:
    record(factory, header(1))
    set_series_state(factory, SeriesState.PROCESSING)
    assert record(factory, header(2)).state is SeriesState.PROCESSING
    assert (series_row(factory).state, series_row(factory).num_instances) == ("processing", 2)


def test_a_not_analysed_series_stays_so(factory) -> None:
    record(factory, header(1))
    set_series_state(factory, SeriesState.NOT_ANALYSED)
    assert record(factory, header(2)).state is SeriesState.NOT_ANALYSED
    assert series_row(factory).num_instances == 2


def test_mark_ready_queues_series_after_their_quiet_time(factory) -> None:
    for k in range(4):
        record(factory, header(k))
    with factory() as session, session.begin():
        assert mark_ready(session, SETTINGS, T0 + dt.timedelta(seconds=9.9)) == []
    with factory() as session, session.begin():
        queued = mark_ready(session, SETTINGS, T0 + dt.timedelta(seconds=10))
    series = series_row(factory)
    assert queued == [series.id]
    assert (series.state, series.ready_at) == ("queued", T0 + dt.timedelta(seconds=10))


def test_mark_ready_stores_a_refused_series_as_not_analysed(factory) -> None:
    record(factory, header(1))
    record(factory, header(1, series="1.2.3.5", body_part="CHEST"))
    for k in range(2, 5):
        record(factory, header(k, series="1.2.3.5", body_part="CHEST"))
    with factory() as session, session.begin():
        assert mark_ready(session, SETTINGS, T0 + dt.timedelta(minutes=1)) == []
    too_few, chest = series_row(factory), series_row(factory, "1.2.3.5")
    assert (too_few.state, too_few.state_reason) == ("not_analysed",
                                                    "not analysed: 1 slices, fewer than the minimum of 3")
    assert chest.state == "not_analysed" and "body part 'CHEST'" in chest.state_reason


def test_a_provably_complete_series_is_queued_without_waiting(factory) -> None:
    results = [record(factory, header(k, expected=4)) for k in range(4)]
    assert [r.state for r in results] == [SeriesState.RECEIVING] * 3 + [SeriesState.QUEUED]
    assert series_row(factory).ready_at == T0


def test_an_announced_count_with_a_gap_waits_for_the_quiet_time(factory) -> None:
    for k in (0, 1, 2, 4):
        record(factory, header(k, expected=4))
    assert series_row(factory).state == "receiving"


def test_concurrent_transactions_store_a_sop_instance_once(factory) -> None:
    barrier = threading.Barrier(4)
    results, errors = [], []

    def send(k: int) -> None:
        try:
            barrier.wait()
            results.append(record(factory, header(1, patient_id=f"P{k}")))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.duplicate for r in results) == [False, True, True, True]
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == 1
        assert session.scalar(select(func.count()).select_from(Study)) == 1
    assert series_row(factory).num_instances == 1


def test_an_enhanced_ct_series_is_not_refused_for_its_single_instance(factory) -> None:
    series_id = record(factory, header(1, sop_class_uid="1.2.840.10008.5.1.4.1.1.2.1")).series_id
    with factory() as session, session.begin():
        assert mark_ready(session, SETTINGS, T0 + dt.timedelta(minutes=1)) == [series_id]
