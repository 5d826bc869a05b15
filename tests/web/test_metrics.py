"""/api/health and /metrics: queue depth, studies by status, alerts by state, a degraded database."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.web import factories as f
from triage import __version__
from triage.config import Settings, load_settings
from triage.db.engine import create_db_engine, session_factory, transaction
from triage.web.app import create_app


def _fill(factory) -> None:  # noqa: ANN001
    with transaction(factory) as s:
        flagged = f.classified(s, f.probabilities(0.9))
        f.classified(s, f.probabilities(0.1))
        waiting = f.study(s)
        f.series(s, waiting, state="queued")
        f.series(s, waiting, state="queued")
        busy = f.study(s)
        f.series(s, busy, state="processing")
        broken = f.study(s)
        f.series(s, broken, state="failed", reason="unreadable")
        f.alert(s, flagged, state="dead", error="refused")
        f.alert(s, flagged, state="sent")
        f.alert(s, flagged, state="sent")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_health_reports_the_queue(client: TestClient, factory, web_settings: Settings) -> None:
    _fill(factory)
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok", "database": "ok", "model": {"configured": None},
        "queue": {"waiting": 2, "processing": 1, "failed": 1}, "version": __version__,
    }


def test_health_names_the_configured_model(web_settings: Settings, factory, tmp_path: Path) -> None:
    settings = load_settings(data_dir=web_settings.data_dir, database_url=web_settings.database_url,
                             web={"secret_key": "x" * 32}, model=str(tmp_path / "model"))
    with TestClient(create_app(settings, factory)) as client:
        assert client.get("/api/health").json()["model"] == {"configured": str(tmp_path / "model")}


def test_health_and_metrics_when_the_database_is_unreachable(web_settings: Settings, tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'triage.db'}")
    try:
        with TestClient(create_app(web_settings, session_factory(engine))) as client:
            response = client.get("/api/health")
            assert response.status_code == 503
            assert response.json()["status"] == "degraded" and response.json()["database"] == "unreachable"
            assert response.json()["queue"] is None
            samples = _samples(client.get("/metrics").text)
            assert samples[("triage_database_up", ())] == 0
            assert not any(name == "triage_studies" for name, _ in samples)
            api = client.get("/api/worklist", headers={"Authorization": "Bearer trg_x"})
            assert api.status_code == 503 and api.headers["retry-after"] == "5"
    finally:
        engine.dispose()


def test_metrics_from_the_database_and_the_default_registry(client: TestClient, factory) -> None:
    from triage.worker import metrics as worker_metrics

    _fill(factory)
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    assert samples[("triage_database_up", ())] == 1
    assert samples[("triage_studies", (("status", "classified"),))] == 2
    assert samples[("triage_studies", (("status", "queued"),))] == 1
    assert samples[("triage_studies", (("status", "failed"),))] == 1
    assert samples[("triage_queue_depth", (("state", "waiting"),))] == 2
    assert samples[("triage_queue_depth", (("state", "processing"),))] == 1
    assert samples[("triage_queue_depth", (("state", "failed"),))] == 1
    assert samples[("triage_series", (("state", "classified"),))] == 2
    assert samples[("triage_alerts", (("state", "dead"),))] == 1
    assert samples[("triage_alerts", (("state", "sent"),))] == 2
    assert samples[("triage_alerts", (("state", "pending"),))] == 0
    assert any(name == "python_info" for name, _ in samples)
    histogram = worker_metrics.TIME_TO_CLASSIFY._name  # noqa: SLF001 - the name the worker registered
    assert any(name.startswith(histogram) for name, _ in samples)
    assert "DOE^JANE" not in response.text
