"""The served OpenAPI document is accurate: schemathesis finds no 5xx and no response off the schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from sqlalchemy.orm import Session, sessionmaker

from tests.web import factories as f
from triage.config import Settings
from triage.db.engine import transaction
from triage.db.models import Series

EXAMPLES_PER_OPERATION = 25


@pytest.fixture
def api_schema(app: FastAPI, factory: sessionmaker[Session],
               web_settings: Settings) -> Iterator[schemathesis.BaseSchema]:
    """The app's own /openapi.json, over a database with a few studies and a key image."""
    with transaction(factory) as s:
        parent = f.classified(s, f.probabilities(0.9, subdural=0.8), n_slices=6, study_uid="1.2.3")
        child = s.query(Series).filter_by(study_id=parent.id).one()
        f.key_image(s, web_settings.store, child, child.result.key_instance_uid)  # type: ignore[union-attr]
        f.classified(s, f.probabilities(0.1), n_slices=3, study_uid="1.2.4")
        failed = f.study(s, study_uid="1.2.5")
        f.series(s, failed, state="failed", reason="unreadable")
    with TestClient(app):  # runs the lifespan, which builds the app's context
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


def test_api_conforms_to_its_openapi_document(api_schema: schemathesis.BaseSchema, admin_token: str) -> None:
    """Every operation, with generated valid and invalid input and an admin token: no 5xx, no undocumented answer.

    (schemathesis' pytest plugin does not work with this pytest, so the operations are driven here.)
    """
    headers = {"Authorization": f"Bearer {admin_token}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 7
    seen: list[str] = []
    for operation in operations:

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            response = case.call_and_validate(headers=headers)
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)

        check()
        seen.append(f"{operation.method.upper()} {operation.path}")
    assert "POST /api/studies/{study_uid}/ack" in seen and "GET /api/worklist" in seen


def test_openapi_document_lists_the_contract(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    for path, method in [("/api/health", "get"), ("/api/worklist", "get"), ("/api/studies/{study_uid}", "get"),
                         ("/api/studies/{study_uid}/ack", "post"), ("/metrics", "get")]:
        assert method in paths[path], path
    assert not any(p in paths for p in ["/", "/admin", "/login", "/studies/{study_uid}"])
    item = document["components"]["schemas"]["StudyItem"]["properties"]
    assert list(item)[:4] == ["study_uid", "accession_number", "patient_id", "study_description"]
    schemes = document["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}
    assert client.get("/docs").status_code == 404, "no Swagger UI from a CDN"
