"""``triage synth``: write N phantom studies as DICOM files plus label CSVs (normal or RSNA Kaggle layout).

Normal layout::

    OUT/study_0001/IM0001.dcm ...   one folder per study, files in InstanceNumber order
    OUT/labels.csv                  one row per slice
    OUT/studies.csv                 one row per study

Kaggle layout (``kaggle=True``), as the RSNA 2019 download::

    OUT/stage_2_train/ID_<sop>.dcm
    OUT/stage_2_train.csv           ID,Label rows ID_<sop>_<class> in the RSNA class order
    OUT/labels.csv, OUT/studies.csv as above (StudyInstanceUID = the ID_ study identifier)

Everything is written into a sibling temporary folder and renamed into place at the end, so an
interrupted run leaves no half-written dataset under OUT.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from pydicom import Dataset

from triage.domain import CLASSES, SUBTYPES
from triage.errors import UsageError
from triage.synth.bleeds import choose_subtypes
from triage.synth.files import rsna_identifiers
from triage.synth.study import MAX_SLICES, PhantomStudy, make_study

LOGGER = logging.getLogger(__name__)

MAX_STUDIES = 100_000
SLICE_CSV = "labels.csv"
STUDY_CSV = "studies.csv"
KAGGLE_DIR = "stage_2_train"
KAGGLE_CSV = "stage_2_train.csv"
#: Class order of the rows of each image in stage_2_train.csv.
KAGGLE_ORDER: tuple[str, ...] = (*SUBTYPES, "any")

SLICE_COLUMNS = (
    "path", "sop_instance_uid", "study_instance_uid", "series_instance_uid", "instance_number", "z", *CLASSES,
)
STUDY_COLUMNS = (
    "study_instance_uid", "series_instance_uid", "patient_id", "accession_number", "folder", "slices",
    "subtle", *CLASSES,
)


def _check(out: Path, studies: int, seed: int, slices: int, positive_fraction: float) -> None:
    if not 1 <= studies <= MAX_STUDIES:
        raise UsageError(f"--studies {studies!r} is invalid; expected 1..{MAX_STUDIES}")
    if not 1 <= slices <= MAX_SLICES:
        raise UsageError(f"--slices {slices!r} is invalid; expected 1..{MAX_SLICES}")
    if not 0.0 <= positive_fraction <= 1.0 or positive_fraction != positive_fraction:
        raise UsageError(f"--positive-fraction {positive_fraction!r} is invalid; expected 0..1")
    if seed < 0:
        raise UsageError(f"--seed {seed!r} is invalid; expected a non-negative integer")
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {str(out)!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"output directory {str(out)!r} is not empty; choose a new or empty directory")
    if not out.parent.is_dir():
        raise UsageError(f"the parent of the output directory {str(out.parent)!r} does not exist")


def study_plan(studies: int, seed: int, positive_fraction: float) -> list[tuple[int, tuple[str, ...]]]:
    """(study seed, subtypes) of every study: exactly round(studies * fraction) positive, shuffled."""
    rng = np.random.default_rng([seed, 99])
    positives = round(studies * positive_fraction)
    flags = np.zeros(studies, dtype=bool)
    flags[rng.permutation(studies)[:positives]] = True
    seeds = np.random.SeedSequence([seed, 98]).generate_state(studies, dtype=np.uint32)
    return [(int(s), choose_subtypes(rng) if flag else ()) for s, flag in zip(seeds, flags, strict=True)]


def write_dataset(
    out: Path, *, studies: int, seed: int, slices: int = 32, positive_fraction: float = 0.5, kaggle: bool = False
) -> str:
    """Write ``studies`` phantom studies under ``out`` and return a one-line summary.

    Parameters
    ----------
    out : pathlib.Path
        A new or empty directory (its parent must exist).
    studies : int
        Number of studies (one axial series each).
    seed : int
        The same seed and arguments write the same bytes.
    slices : int
        Slices per study, 5 mm apart.
    positive_fraction : float
        Fraction of studies with at least one hemorrhage (rounded to a whole number of studies).
    kaggle : bool
        RSNA Kaggle layout (``stage_2_train/ID_<sop>.dcm`` and ``stage_2_train.csv``).

    Raises
    ------
    triage.errors.UsageError
        An invalid argument, or an output directory that is not empty (nothing is written then).
    """
    out = Path(out)
    _check(out, studies, seed, slices, positive_fraction)
    started = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        totals = _write_all(staging, studies, seed, slices, positive_fraction, kaggle)
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    positive, instances, positive_slices = totals
    layout = "RSNA Kaggle layout" if kaggle else "one folder per study"
    return (
        f"wrote {studies} studies ({positive} with hemorrhage), {instances} slices "
        f"({positive_slices} positive) to {out} [{layout}; seed {seed}] in {time.monotonic() - started:.1f} s"
    )


def _write_all(
    root: Path, studies: int, seed: int, slices: int, positive_fraction: float, kaggle: bool
) -> tuple[int, int, int]:
    if kaggle:
        (root / KAGGLE_DIR).mkdir()
    slice_rows: list[list[object]] = []
    study_rows: list[list[object]] = []
    kaggle_rows: list[tuple[str, int]] = []
    positive = positive_slices = 0
    for number, (study_seed, subtypes) in enumerate(study_plan(studies, seed, positive_fraction), start=1):
        study = make_study(study_seed, slices=slices, subtypes=subtypes, kaggle=kaggle, number=number)
        folder = KAGGLE_DIR if kaggle else f"study_{number:04d}"
        if not kaggle:
            (root / folder).mkdir()
        for index, ds in enumerate(study.datasets):
            name = f"{ds.SOPInstanceUID}.dcm" if kaggle else f"IM{index + 1:04d}.dcm"
            _save(ds, root / folder / name, kaggle)
            labels = study.labels[index]
            slice_rows.append([
                f"{folder}/{name}", ds.SOPInstanceUID, study.study_uid, study.series_uid, index + 1,
                f"{study.z[index]:.3f}", *(int(v) for v in labels),
            ])
            if kaggle:
                kaggle_rows += [(f"{ds.SOPInstanceUID}_{c}", int(labels[CLASSES.index(c)])) for c in KAGGLE_ORDER]
        study_labels = study.study_labels
        study_rows.append(_study_row(study, folder, study_labels))
        positive += int(study_labels[0])
        positive_slices += int(study.labels[:, 0].sum())
    _write_csv(root / SLICE_CSV, SLICE_COLUMNS, slice_rows)
    _write_csv(root / STUDY_CSV, STUDY_COLUMNS, study_rows)
    if kaggle:
        _write_csv(root / KAGGLE_CSV, ("ID", "Label"), [list(row) for row in kaggle_rows])
    return positive, len(slice_rows), positive_slices


def _save(ds: Dataset, path: Path, kaggle: bool) -> None:
    if kaggle:
        with rsna_identifiers():
            ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, enforce_file_format=True)


def _study_row(study: PhantomStudy, folder: str, labels: np.ndarray) -> list[object]:
    header = study.header
    return [
        study.study_uid, study.series_uid, header.patient_id, header.accession, folder, len(study.datasets),
        int(study.subtle), *(int(v) for v in labels),
    ]


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
