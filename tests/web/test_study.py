"""The study page and API: findings, per-slice chart, key images, stage times, acknowledge, feedback."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.web import factories as f
from tests.web.conftest import Browser
from triage.config import Settings
from triage.db.engine import transaction
from triage.db.models import AuditEvent, Feedback, Series, Study
from triage.db.queries import SlicePoint
from triage.domain import CLASSES
from triage.web.charts import probability_chart

SVG = "{http://www.w3.org/2000/svg}"


def _flagged_study(factory: sessionmaker[Session], settings: Settings, *, image: bool = True) -> tuple[str, str]:
    with transaction(factory) as s:
        parent = f.classified(s, f.probabilities(0.96, subdural=0.91, subarachnoid=0.3), n_slices=24,
                              accession="ACC-STUDY", patient_name="ROE^RICHARD")
        child = s.scalars(select(Series).where(Series.study_id == parent.id)).one()
        result = child.result
        assert result is not None and result.key_instance_uid
        if image:
            f.key_image(s, settings.store, child, result.key_instance_uid)
        return parent.study_uid, result.key_instance_uid


def test_study_api_shape(client: TestClient, token: str, factory, web_settings: Settings) -> None:
    uid, key = _flagged_study(factory, web_settings)
    body = client.get(f"/api/studies/{uid}", headers={"Authorization": f"Bearer {token}"}).json()
    assert body["study_uid"] == uid and body["flagged"] is True and body["subtypes"] == ["subdural"]
    assert body["key_instance_uid"] == key
    (series,) = body["series"]
    assert series["state"] == "classified" and series["num_instances"] == 24
    assert series["result"]["flagged_classes"] == ["any", "subdural"]
    assert series["result"]["model_version"] == "ich-test-1"
    assert len(series["slices"]) == 24
    zs = [p["z_position"] for p in series["slices"]]
    assert zs == sorted(zs)
    assert set(series["slices"][0]["probabilities"]) == set(CLASSES)
    peak = max(series["slices"], key=lambda p: p["probabilities"]["any"])
    assert peak["probabilities"]["any"] > 0.9
    (image,) = series["key_images"]
    assert image["sop_instance_uid"] == key and image["url"] == f"/api/key-images/{image['id']}"
    stages = body["stages"]
    assert stages["first_received"] and stages["ready"] and stages["processing_started"] and stages["classified"]
    assert stages["alert_sent"] is None and stages["acknowledged"] is None
    assert body["feedback"] == []


def test_unknown_or_malformed_study(client: TestClient, token: str, radiologist: Browser) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    missing = client.get("/api/studies/1.2.999", headers=headers)
    assert missing.status_code == 404 and "1.2.999" in missing.json()["detail"]
    assert client.get("/api/studies/not-a-uid", headers=headers).status_code == 422
    page = radiologist.client.get("/studies/1.2.999", headers={"Accept": "text/html"})
    assert page.status_code == 404 and "1.2.999" in page.text and page.template.name == "error.html"  # type: ignore[attr-defined]


def test_study_page_shows_findings_chart_and_key_image(radiologist: Browser, factory,
                                                        web_settings: Settings) -> None:
    uid, _ = _flagged_study(factory, web_settings)
    response = radiologist.client.get(f"/studies/{uid}")
    assert response.status_code == 200
    assert response.template.name == "study.html"  # type: ignore[attr-defined]
    assert response.context["item"].study_uid == uid  # type: ignore[attr-defined]
    html = response.text
    assert "Suspected intracranial hemorrhage: subdural" in html
    assert "ROE^RICHARD" in html and "ACC-STUDY" in html
    chart = re.search(r'<svg class="chart".*?</svg>', html, re.S)
    assert chart
    root = ET.fromstring(chart.group(0))
    lines = {p.get("data-class"): p for p in root.iter(f"{SVG}polyline")}
    assert set(lines) == set(CLASSES)
    assert len(lines["any"].get("points", "").split()) == 24
    assert root.find(f"{SVG}line[@class='key-slice']") is not None
    assert root.find(f"{SVG}line[@class='threshold']") is not None
    img = re.search(r'<img src="(/api/key-images/\d+)"', html)
    assert img
    png = radiologist.client.get(img.group(1))
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG") and png.headers["cache-control"] == "no-store"
    for label in ["First slice received", "Processing started", "Classified", "Alert sent", "Acknowledged"]:
        assert label in html
    assert 'name="true_subtypes"' in html and 'value="subdural"' in html


def test_placeholder_without_key_image(radiologist: Browser, factory, web_settings: Settings) -> None:
    uid, _ = _flagged_study(factory, web_settings, image=False)
    html = radiologist.client.get(f"/studies/{uid}").text
    assert 'id="no-key-image"' in html and "<img src=\"/api/key-images" not in html


def test_study_without_results(radiologist: Browser, factory) -> None:
    with transaction(factory) as s:
        parent = f.study(s)
        f.series(s, parent, state="receiving", num_instances=2)
        uid = parent.study_uid
    html = radiologist.client.get(f"/studies/{uid}").text
    assert "Not classified yet (receiving)" in html and "No per-slice predictions yet." in html
    assert "No key image yet." in html


def test_key_image_files_stay_inside_the_store(client: TestClient, token: str, factory,
                                              web_settings: Settings) -> None:
    from triage.db.models import KeyImage

    secret = web_settings.data_dir / "outside.png"
    secret.write_bytes(f.phantom_png(16))
    with transaction(factory) as s:
        parent = f.classified(s, f.probabilities(0.9))
        child = s.scalars(select(Series).where(Series.study_id == parent.id)).one()
        bad = KeyImage(series_id=child.id, sop_instance_uid="1.2.3", path="../outside.png")
        gone = KeyImage(series_id=child.id, sop_instance_uid="1.2.4", path="keyimages/missing.png")
        s.add_all([bad, gone])
        s.flush()
        ids = [bad.id, gone.id]
    for image_id in [*ids, 999]:
        response = client.get(f"/api/key-images/{image_id}", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 404, image_id


def test_acknowledge_via_api(radiologist: Browser, factory) -> None:
    with transaction(factory) as s:
        uid = f.classified(s, f.probabilities(0.9)).study_uid
    first = radiologist.post(f"/api/studies/{uid}/ack")
    assert first.status_code == 200
    body = first.json()
    assert body["acknowledged"] is True and body["acknowledged_by"] == "rad" and body["study_uid"] == uid
    again = radiologist.post(f"/api/studies/{uid}/ack")
    assert again.json()["acknowledged_at"] == body["acknowledged_at"]
    with factory() as s:
        study = s.scalars(select(Study)).one()
        assert study.acknowledged_by == "rad" and study.acknowledged_at is not None
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "study.ack")).all()
        assert [(e.actor, e.target) for e in events] == [("rad", uid)]
    item = radiologist.client.get("/api/worklist").json()["studies"][0]
    assert item["acknowledged"] is True and item["acknowledged_by"] == "rad"
    assert radiologist.post("/api/studies/1.2.999/ack").status_code == 404


def test_acknowledge_form_moves_the_study_down(radiologist: Browser, factory) -> None:
    with transaction(factory) as s:
        first = f.classified(s, f.probabilities(0.95), accession="FIRST").study_uid
        f.classified(s, f.probabilities(0.80), accession="SECOND")
    before = [i["accession_number"] for i in radiologist.client.get("/api/worklist").json()["studies"]]
    assert before == ["FIRST", "SECOND"]
    response = radiologist.form(f"/studies/{first}/ack", {"next": "/"})
    assert response.status_code == 303 and response.headers["location"] == "/"
    after = [i["accession_number"] for i in radiologist.client.get("/api/worklist").json()["studies"]]
    assert after == ["SECOND", "FIRST"]
    html = radiologist.client.get(f"/studies/{first}").text
    assert "Acknowledged by rad" in html
    evil = radiologist.form(f"/studies/{first}/ack", {"next": "//evil.example"})
    assert evil.headers["location"] == "/"


def test_feedback_via_form_and_api(radiologist: Browser, token: str, factory) -> None:
    with transaction(factory) as s:
        uid = f.classified(s, f.probabilities(0.9, subdural=0.8)).study_uid
    response = radiologist.client.post(
        f"/studies/{uid}/feedback",
        data={"csrf_token": radiologist.csrf, "agree": "no", "true_subtypes": ["epidural", "subdural"],
              "comment": "  acute on chronic  "},
        follow_redirects=False,
    )
    assert response.status_code == 303 and "saved=feedback" in response.headers["location"]
    api = radiologist.client.post(f"/api/studies/{uid}/feedback", json={"agree": True, "true_subtypes": ["subdural"]},
                                  headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 201 and api.json()["username"] == "rad"
    bad = radiologist.post(f"/api/studies/{uid}/feedback", json={"agree": True, "true_subtypes": ["bleed"]})
    assert bad.status_code == 422
    bad_form = radiologist.form(f"/studies/{uid}/feedback", {"agree": "yes", "true_subtypes": "bleed"})
    assert bad_form.status_code == 400 and "bleed" in bad_form.text
    with factory() as s:
        rows = s.scalars(select(Feedback).order_by(Feedback.id)).all()
        assert [(r.agree, r.true_subtypes, r.comment) for r in rows] == [
            (False, ["epidural", "subdural"], "acute on chronic"), (True, ["subdural"], "")]
        assert len(s.scalars(select(AuditEvent).where(AuditEvent.action == "study.feedback")).all()) == 2
    body = radiologist.client.get(f"/api/studies/{uid}").json()
    assert [fb["agree"] for fb in body["feedback"]] == [True, False]
    html = radiologist.client.get(f"/studies/{uid}").text
    assert "acute on chronic" in html and "disagrees" in html


def test_chart_without_z_positions_uses_the_index() -> None:
    points = [SlicePoint(f"1.2.{i}", i, None, {c: 0.1 * i for c in CLASSES}) for i in range(5)]
    svg = str(probability_chart(points, {"any": 0.5}, "1.2.3"))
    root = ET.fromstring(svg)
    assert "slice index" in svg
    assert len(list(root.iter(f"{SVG}polyline"))) == 6
    assert str(probability_chart([])) == '<p class="empty">No per-slice predictions yet.</p>'
    single = ET.fromstring(str(probability_chart(points[:1])))
    assert len(list(single.iter(f"{SVG}circle"))) == 6
