"""Claims, leases and their expiry on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter

from sqlalchemy import select

from triage.db.engine import transaction
from triage.db.models import Series, Study
from triage.db.queue import claim_next, lock_claimed, release_expired, release_owned, renew_lease
from triage.domain import SeriesState

NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


def _queue(factory, n: int) -> list[int]:
    with transaction(factory) as s:
        study = Study(study_uid="1.2.826.0.1")
        rows = [Series(study=study, series_uid=f"1.2.826.0.1.{i}", state="queued",
                       ready_at=NOW + dt.timedelta(seconds=i)) for i in range(n)]
        s.add_all(rows)
    return [r.id for r in rows]


def test_claims_oldest_first_and_once(factory) -> None:
    ids = _queue(factory, 3)
    got = []
    for _ in range(4):
        with transaction(factory) as s:
            claim = claim_next(s, "w1", 60, NOW)
        got.append(claim.series_id if claim else None)
    assert got == [*ids, None]
    with factory() as s:
        first = s.get(Series, ids[0])
        assert first.state == "processing" and first.lease_owner == "w1" and first.attempts == 1
        assert first.lease_expires_at == NOW + dt.timedelta(seconds=60)


def test_concurrent_claims_never_share_a_series(factory) -> None:
    ids = _queue(factory, 40)
    claimed: list[int] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while True:
            with transaction(factory) as s:
                claim = claim_next(s, name, 60, NOW)
            if claim is None:
                return
            with lock:
                claimed.append(claim.series_id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)
    assert max(Counter(claimed).values()) == 1


def test_expired_lease_requeues_then_fails(factory) -> None:
    (sid,) = _queue(factory, 1)
    for attempt in (1, 2):
        with transaction(factory) as s:
            claim = claim_next(s, "dead-worker", 10, NOW)
            assert claim is not None and claim.attempt == attempt
        with transaction(factory) as s:
            assert release_expired(s, NOW + dt.timedelta(seconds=5), max_attempts=2) == []
        with transaction(factory) as s:
            assert release_expired(s, NOW + dt.timedelta(seconds=11), max_attempts=2) == [sid]
    with factory() as s:
        series = s.get(Series, sid)
        assert series.state == SeriesState.FAILED.value
        assert "lease of worker dead-worker expired" in series.state_reason
        assert series.lease_owner is None


def test_lost_lease_cannot_write(factory) -> None:
    (sid,) = _queue(factory, 1)
    with transaction(factory) as s:
        old = claim_next(s, "slow", 10, NOW)
    with transaction(factory) as s:
        release_expired(s, NOW + dt.timedelta(seconds=11), max_attempts=3)
    with transaction(factory) as s:
        new = claim_next(s, "fresh", 10, NOW + dt.timedelta(seconds=12))
    assert new is not None and new.series_id == sid and new.attempt == 2
    with transaction(factory) as s:
        assert lock_claimed(s, old) is None
        assert renew_lease(s, old, 10, NOW) is None
        assert lock_claimed(s, new) is not None
        assert renew_lease(s, new, 30, NOW + dt.timedelta(seconds=13)) is not None


def test_clean_stop_releases_without_counting(factory) -> None:
    ids = _queue(factory, 2)
    with transaction(factory) as s:
        claim_next(s, "me", 60, NOW)
        claim_next(s, "other", 60, NOW)
    with transaction(factory) as s:
        assert release_owned(s, "me") == [ids[0]]
    with factory() as s:
        rows = {r.id: r for r in s.scalars(select(Series))}
        assert rows[ids[0]].state == "queued" and rows[ids[0]].attempts == 0
        assert rows[ids[1]].state == "processing"
