"""A flagged phantom study: a signed webhook, an e-mail and an SR in the PACS, through the daemon's jobs."""

from __future__ import annotations

import io
import time

import highdicom as hd
from pydicom import dcmread

from tests.alerts.conftest import SECRET, add_case, use_dicom, use_mail, use_webhook
from tests.helpers import wait_for
from triage.alerts.dispatcher import AlertService
from triage.alerts.webhook import verify_signature
from triage.daemon import build_scheduler
from triage.db.models import AuditEvent
from triage.domain import CLASSES
from triage.synth import make_study


def test_a_flagged_phantom_reaches_every_channel_within_seconds(factory, alert_settings, webhook, mail, orthanc):
    phantom = make_study(11, slices=8, subtypes=("subdural",), rows=128)
    flagged = tuple(name for name, column in zip(CLASSES, phantom.labels.T, strict=True) if column.any())
    assert flagged == ("any", "subdural")
    use_webhook(alert_settings, webhook)
    use_mail(alert_settings, mail)
    use_dicom(alert_settings, orthanc.ae_title, orthanc.dicom_port)
    alert_settings.alerts.dispatch_seconds = 60  # delivery comes from the commit's wake-up, not from polling
    before = set(orthanc.instances())
    scheduler = build_scheduler()
    service = AlertService(alert_settings, factory, scheduler)
    service.start()
    scheduler.start()
    try:
        started = time.monotonic()
        case = add_case(factory, alert_settings, flagged=flagged, datasets=phantom.datasets)
        wait_for(lambda: webhook.delivered() and mail.messages and len(set(orthanc.instances()) - before) == 2,
                 timeout=30)
        elapsed = time.monotonic() - started
    finally:
        service.stop()
        scheduler.shutdown(wait=True)
    assert elapsed < 30
    [request] = webhook.delivered()
    assert verify_signature(request.body, request.headers["X-Triage-Signature"], SECRET)
    assert request.json["study_uid"] == phantom.datasets[0].StudyInstanceUID
    assert request.json["accession_number"] == phantom.datasets[0].AccessionNumber
    assert "subdural" in mail.messages[0].get_body(("plain",)).get_content()
    stored = [dcmread(io.BytesIO(orthanc.file(i))) for i in set(orthanc.instances()) - before]
    [sr_ds] = [ds for ds in stored if ds.Modality == "SR"]
    assert sr_ds.StudyInstanceUID == case.study_uid and sr_ds.PatientID == phantom.datasets[0].PatientID
    groups = hd.sr.EnhancedSR.from_dataset(sr_ds).content.get_image_measurement_groups()
    present = {g.finding_type.meaning for g in groups
               if g.get_qualitative_evaluations()[0].value.meaning == "Present"}
    assert present == {"Intracranial hemorrhage", "Subdural intracranial hemorrhage"}
    with factory() as session:
        sent = session.query(AuditEvent).filter(AuditEvent.action == "alert.sent").count()
    assert sent == 3
