"""Alerts and results back to the PACS: outbox dispatcher, channels (webhook, e-mail, DICOM), escalation."""
