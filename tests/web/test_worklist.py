"""The worklist: priority order, derived status, filters and the JSON shape of DESIGN.md section 4."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.web import factories as f
from tests.web.conftest import Browser
from triage.db.engine import transaction
from triage.db.models import utcnow

CONTRACT_FIELDS = [
    "study_uid", "accession_number", "patient_id", "study_description", "received_at", "status", "priority",
    "score", "flagged", "probabilities", "subtypes", "num_instances", "key_instance_uid", "acknowledged",
    "model_version", "error",
]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_order_flagged_unacknowledged_first_then_score_then_oldest(
    client: TestClient, factory: sessionmaker[Session], token: str
) -> None:
    with transaction(factory) as s:
        routine_old = f.classified(s, f.probabilities(0.10), minutes_ago=120, accession="ROUTINE-OLD")
        routine_new = f.classified(s, f.probabilities(0.10), minutes_ago=5, accession="ROUTINE-NEW")
        routine_high = f.classified(s, f.probabilities(0.40), minutes_ago=1, accession="ROUTINE-HIGH")
        acked = f.classified(s, f.probabilities(0.99, subdural=0.9), minutes_ago=30, accession="ACKED")
        acked.acknowledged_at, acked.acknowledged_by = utcnow(), "rad"
        flagged_low = f.classified(s, f.probabilities(0.70, epidural=0.6), minutes_ago=3, accession="FLAG-LOW")
        flagged_high = f.classified(s, f.probabilities(0.95, subdural=0.9), minutes_ago=2, accession="FLAG-HIGH")
        flagged_tie_old = f.classified(s, f.probabilities(0.70), minutes_ago=50, accession="FLAG-TIE-OLD")
        receiving = f.study(s, minutes_ago=0.5, accession="RECEIVING")
        f.series(s, receiving, state="receiving", num_instances=3)
        del routine_old, routine_new, routine_high, flagged_low, flagged_high, flagged_tie_old
    body = client.get("/api/worklist", headers=_bearer(token)).json()
    order = [item["accession_number"] for item in body["studies"]]
    assert order == ["FLAG-HIGH", "FLAG-TIE-OLD", "FLAG-LOW", "ACKED", "ROUTINE-HIGH", "ROUTINE-OLD",
                     "ROUTINE-NEW", "RECEIVING"]
    assert body["total"] == 8


def test_item_shape_follows_the_contract(client: TestClient, factory: sessionmaker[Session], token: str) -> None:
    with transaction(factory) as s:
        parent = f.classified(s, f.probabilities(0.93, subdural=0.88, subarachnoid=0.2), n_slices=12,
                              accession="A1", patient_id="PID-9", description="CT HEAD")
        uid = parent.study_uid
    item = client.get("/api/worklist", headers=_bearer(token)).json()["studies"][0]
    assert list(item)[: len(CONTRACT_FIELDS)] == CONTRACT_FIELDS
    assert item["study_uid"] == uid
    assert (item["accession_number"], item["patient_id"], item["study_description"]) == ("A1", "PID-9", "CT HEAD")
    received = dt.datetime.fromisoformat(item["received_at"].replace("Z", "+00:00"))
    assert received.tzinfo is not None and received.utcoffset() == dt.timedelta(0)
    assert item["status"] == "classified"
    assert item["priority"] == "critical" and item["flagged"] is True
    assert item["score"] == 0.93
    assert item["probabilities"] == {"any": 0.93, "epidural": 0.0, "intraparenchymal": 0.0,
                                     "intraventricular": 0.0, "subarachnoid": 0.2, "subdural": 0.88}
    assert item["subtypes"] == ["subdural"]
    assert item["num_instances"] == 12
    assert item["key_instance_uid"] and item["key_instance_uid"].startswith("1.2.")
    assert item["acknowledged"] is False
    assert item["model_version"] == "ich-test-1"
    assert item["error"] is None


def test_status_is_derived_from_the_series(client: TestClient, factory: sessionmaker[Session], token: str) -> None:
    cases = {
        "PROC": ["classified", "processing"],
        "QUEUED": ["queued", "receiving"],
        "RECV": ["receiving", "not_analysed"],
        "NA": ["not_analysed", "not_analysed"],
        "FAILED": ["failed"],
        "MIXED": ["classified", "failed"],
    }
    with transaction(factory) as s:
        for accession, states in cases.items():
            parent = f.study(s, accession=accession)
            for state in states:
                reason = {"failed": "no decodable slices", "not_analysed": "localizer (2 slices)"}.get(state)
                child = f.series(s, parent, state=state, reason=reason, num_instances=4)
                if state == "classified":
                    f.result(s, child, f.probabilities(0.1))
        f.study(s, accession="EMPTY")
    items = {i["accession_number"]: i for i in client.get("/api/worklist", headers=_bearer(token)).json()["studies"]}
    assert {k: v["status"] for k, v in items.items()} == {
        "PROC": "processing", "QUEUED": "queued", "RECV": "receiving", "NA": "not_analysed", "FAILED": "failed",
        "MIXED": "classified", "EMPTY": "receiving",
    }
    assert items["FAILED"]["error"] == "no decodable slices"
    assert items["FAILED"]["status_reason"] == "no decodable slices"
    assert items["NA"]["status_reason"] == "localizer (2 slices)"
    assert items["MIXED"]["error"] == "no decodable slices"
    assert items["MIXED"]["status_reason"] is None
    assert items["NA"]["probabilities"]["any"] is None
    assert items["NA"]["num_instances"] == 8
    for status in {v["status"] for v in items.values()}:  # the SQL filter agrees with the derivation
        listed = client.get("/api/worklist", params={"status": status}, headers=_bearer(token)).json()["studies"]
        assert {i["accession_number"] for i in listed} == {k for k, v in items.items() if v["status"] == status}


def test_study_probabilities_are_the_max_over_series(
    client: TestClient, factory: sessionmaker[Session], token: str
) -> None:
    with transaction(factory) as s:
        parent = f.study(s)
        a = f.series(s, parent)
        b = f.series(s, parent)
        f.result(s, a, f.probabilities(0.7, subdural=0.6, epidural=0.1), key_instance_uid="1.2.3.1")
        f.result(s, b, f.probabilities(0.9, subdural=0.2, epidural=0.55), key_instance_uid="1.2.3.2")
    item = client.get("/api/worklist", headers=_bearer(token)).json()["studies"][0]
    assert item["probabilities"]["any"] == 0.9
    assert item["probabilities"]["subdural"] == 0.6
    assert item["probabilities"]["epidural"] == 0.55
    assert item["subtypes"] == ["epidural", "subdural"]
    assert item["key_instance_uid"] == "1.2.3.2"


def test_filters(client: TestClient, factory: sessionmaker[Session], token: str) -> None:
    with transaction(factory) as s:
        f.classified(s, f.probabilities(0.9), accession="FLAGGED", patient_name="SMITH^ANNA")
        f.classified(s, f.probabilities(0.1), accession="CLEAN")
        old = f.classified(s, f.probabilities(0.1), accession="OLD", minutes_ago=3 * 24 * 60)
        failed = f.study(s, accession="BROKEN_1")
        f.series(s, failed, state="failed", reason="unreadable")
        old_day = old.first_received_at.date()

    def accessions(**params: object) -> set[str]:
        response = client.get("/api/worklist", params=params, headers=_bearer(token))
        assert response.status_code == 200, response.text
        return {i["accession_number"] for i in response.json()["studies"]}

    assert accessions(flagged="true") == {"FLAGGED"}
    assert accessions(flagged="false") == {"CLEAN", "OLD", "BROKEN_1"}
    assert accessions(status="failed") == {"BROKEN_1"}
    assert accessions(date_from=old_day.isoformat(), date_to=old_day.isoformat()) == {"OLD"}
    assert "OLD" not in accessions(date_from=(old_day + dt.timedelta(days=1)).isoformat())
    assert accessions(q="smith") == {"FLAGGED"}
    assert accessions(q="_1") == {"BROKEN_1"}, "LIKE wildcards are matched literally"
    assert accessions(q="%") == set()
    assert accessions(limit=1) == {"FLAGGED"}
    assert client.get("/api/worklist", params={"status": "exploded"}, headers=_bearer(token)).status_code == 422
    assert client.get("/api/worklist", params={"date_from": "yesterday"}, headers=_bearer(token)).status_code == 422
    assert client.get("/api/worklist", params={"date_to": "9999-12-31"}, headers=_bearer(token)).status_code == 200


def test_worklist_page_lists_rows_with_badges(radiologist: Browser, factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        f.classified(s, f.probabilities(0.93, subdural=0.88), accession="HOT", minutes_ago=12)
        f.classified(s, f.probabilities(0.05), accession="COLD", minutes_ago=125)
        broken = f.study(s, accession="BAD")
        f.series(s, broken, state="failed", reason="pixel data cannot be decoded")
    page = radiologist.client.get("/")
    assert page.status_code == 200
    assert page.template.name == "worklist.html"  # type: ignore[attr-defined]
    html = page.text
    assert html.index("HOT") < html.index("COLD") < html.index("BAD")
    assert "badge-critical" in html and "SDH 88 %" in html and "ICH 93 %" in html
    assert "12 min ago" in html and "2 h 05 min ago" in html
    assert "pixel data cannot be decoded" in html and "status-failed" in html
    assert 'action="/studies/' in html and "Acknowledge" in html
    assert "/static/worklist.js" in html


def test_worklist_page_filters_and_rejects_bad_values(radiologist: Browser, factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        f.classified(s, f.probabilities(0.93), accession="HOT")
        f.classified(s, f.probabilities(0.05), accession="COLD")
    html = radiologist.client.get("/?flagged=1&status=&date_from=&date_to=&q=").text
    assert "HOT" in html and "COLD" not in html
    bad = radiologist.client.get("/?status=nonsense", headers={"Accept": "text/html"})
    assert bad.status_code == 400 and "nonsense" in bad.text
    assert radiologist.client.get("/?date_from=31.12.2024").status_code == 400
