"""Synthetic head-CT phantoms with the five hemorrhage subtypes, written as DICOM series.

``make_study`` renders one study in memory (for tests and the demo); ``write_dataset`` is
``triage synth``. docs/phantoms.md describes the anatomy, the bleeds and the file layouts.
"""

from triage.synth.bleeds import BleedOptions, choose_subtypes
from triage.synth.study import PhantomStudy, make_study
from triage.synth.writer import KAGGLE_CSV, KAGGLE_DIR, SLICE_CSV, STUDY_CSV, study_plan, write_dataset

__all__ = [
    "KAGGLE_CSV",
    "KAGGLE_DIR",
    "SLICE_CSV",
    "STUDY_CSV",
    "BleedOptions",
    "PhantomStudy",
    "choose_subtypes",
    "make_study",
    "study_plan",
    "write_dataset",
]
