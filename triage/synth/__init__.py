"""Synthetic head-CT phantoms with the five hemorrhage subtypes, written as DICOM series."""

from __future__ import annotations

from pathlib import Path


def write_dataset(
    out: Path, *, studies: int, seed: int, slices: int, positive_fraction: float, kaggle: bool
) -> str:
    """Write ``studies`` phantom studies under ``out``; return a one-line summary (not built yet)."""
    raise NotImplementedError("triage synth is not built yet")
