"""Prometheus counters of the DICOM receiver (in the default registry, which /metrics exposes)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

INSTANCES_STORED = Counter(
    "triage_dicom_instances_stored_total",
    "Instances stored durably (file fsynced and row committed) and acknowledged with success",
)
DUPLICATES = Counter(
    "triage_dicom_duplicates_total",
    "Instances received again (same SOP Instance UID): acknowledged, stored once",
)
REJECTIONS = Counter(
    "triage_dicom_rejections_total",
    "C-STORE requests answered with a failure status",
    ["reason", "status"],
)
ASSOCIATIONS = Counter(
    "triage_dicom_associations_total",
    "Association requests by outcome (accepted, rejected_aet, rejected, aborted)",
    ["result"],
)
ECHOES = Counter("triage_dicom_echoes_total", "C-ECHO requests answered")
STORE_SECONDS = Histogram(
    "triage_dicom_store_seconds",
    "Time from a complete C-STORE request to its status (validation, fsync, commit)",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
)


def rejected(reason: str, status: int) -> None:
    """Count one C-STORE answered with failure ``status`` for ``reason``."""
    REJECTIONS.labels(reason=reason, status=f"0x{status:04X}").inc()
