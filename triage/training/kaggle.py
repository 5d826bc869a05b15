"""Reader of the RSNA 2019 Kaggle layout: ``stage_2_train.csv`` labels, ``ID_<sop>.dcm`` files, study split.

The CSV has one row per slice and class, ``ID_<sop>_<class>,Label``. Slices are grouped by the
StudyInstanceUID in each file's header (read without pixel data, in parallel, and cached next to the
work directory) so that the train/validation split never puts slices of one study on both sides.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pydicom.config
from tqdm import tqdm

from triage.domain import CLASSES
from triage.errors import UsageError

LOGGER = logging.getLogger(__name__)

_ROW_ID = re.compile(r"^(ID_[0-9A-Za-z]+)_(" + "|".join(CLASSES) + r")$")
INDEX_HEADER = ("id", "study", "series", "z")


class TrainingDataError(UsageError):
    """Training or evaluation data that cannot be used (the CLI exits with code 2, naming the value)."""


@dataclass(frozen=True)
class SliceTable:
    """Labelled slices, one row each.

    Attributes
    ----------
    ids
        ``ID_<sop>`` identifiers.
    paths
        DICOM file of each slice.
    labels
        (N, 6) uint8 labels in ``CLASSES`` order.
    studies
        StudyInstanceUID of each slice (the unit of the split and of study-level metrics).
    """

    ids: np.ndarray
    paths: np.ndarray
    labels: np.ndarray
    studies: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: np.ndarray | Sequence[int]) -> SliceTable:
        """The rows given (indices or a boolean mask)."""
        rows = np.asarray(rows)
        return SliceTable(self.ids[rows], self.paths[rows], self.labels[rows], self.studies[rows])

    def summary(self) -> dict[str, int]:
        """Counts for logs and the model metadata (slices, studies, positives per class)."""
        positive_studies = np.unique(self.studies[self.labels[:, 0] == 1])
        return {
            "slices": len(self),
            "studies": int(len(np.unique(self.studies))),
            "positive_studies": int(len(positive_studies)),
            **{f"positive_{name}": int(self.labels[:, k].sum()) for k, name in enumerate(CLASSES)},
        }


def read_labels(csv_path: Path) -> dict[str, np.ndarray]:
    """``ID_<sop>`` -> (6,) uint8 labels from a Kaggle ``stage_2_train.csv``.

    Duplicate rows with the same label are harmless (the real file has some); a slice that lacks a
    class, a malformed ID or a label other than 0/1 is an error naming the line.
    """
    if not csv_path.is_file():
        raise TrainingDataError(f"labels file {str(csv_path)!r} does not exist")
    labels: dict[str, np.ndarray] = {}
    seen: dict[str, int] = {}
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["ID", "Label"]:
            raise TrainingDataError(f"{csv_path.name}: header is {header!r}, expected ['ID', 'Label']")
        for line, row in enumerate(reader, start=2):
            _add_row(labels, seen, row, line, csv_path.name)
    incomplete = [sop for sop, mask in seen.items() if mask != (1 << len(CLASSES)) - 1]
    if incomplete:
        raise TrainingDataError(
            f"{csv_path.name}: {len(incomplete)} slice(s) lack some of the six classes, e.g. {incomplete[0]!r}"
        )
    return labels


def _add_row(labels: dict[str, np.ndarray], seen: dict[str, int], row: list[str], line: int, name: str) -> None:
    if len(row) < 2:
        raise TrainingDataError(f"{name} line {line}: {row!r} is not 'ID_<sop>_<class>,Label'")
    match = _ROW_ID.match(row[0].strip())
    if match is None:
        raise TrainingDataError(f"{name} line {line}: ID {row[0]!r} is not ID_<sop>_<class> with class in {CLASSES}")
    value = row[1].strip()
    if value not in ("0", "1"):
        raise TrainingDataError(f"{name} line {line}: label {value!r} is not 0 or 1")
    sop, k = match.group(1), CLASSES.index(match.group(2))
    vector = labels.setdefault(sop, np.zeros(len(CLASSES), dtype=np.uint8))
    if seen.get(sop, 0) >> k & 1 and vector[k] != int(value):
        raise TrainingDataError(f"{name} line {line}: {row[0]!r} appears again with a different label")
    vector[k] = int(value)
    seen[sop] = seen.get(sop, 0) | 1 << k


def _header(path: str) -> tuple[str, str, float] | None:
    """(StudyInstanceUID, SeriesInstanceUID, z) of one file, or None when it cannot be read.

    RSNA files carry ``ID_...`` strings in their UID attributes; value validation is turned off
    while reading them (they are only used as group keys here).
    """
    previous = pydicom.config.settings.reading_validation_mode
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    try:
        ds = pydicom.dcmread(
            path, stop_before_pixels=True,
            specific_tags=["StudyInstanceUID", "SeriesInstanceUID", "ImagePositionPatient"],
        )
        position = ds.get("ImagePositionPatient")
        z = float(position[2]) if position is not None and len(position) == 3 else float("nan")
        return str(ds.StudyInstanceUID), str(ds.get("SeriesInstanceUID", "")), z
    except Exception:  # noqa: BLE001 - any unreadable file is skipped and counted
        return None
    finally:
        pydicom.config.settings.reading_validation_mode = previous


def scan_headers(paths: Sequence[Path], *, workers: int, progress: bool = True) -> list[tuple[str, str, float] | None]:
    """Read the study, series and z of every file (header only), in ``workers`` processes."""
    items = [str(p) for p in paths]
    bar = tqdm(total=len(items), desc="reading headers", unit="file", disable=not progress, leave=False)
    results: list[tuple[str, str, float] | None] = []
    if workers <= 1 or len(items) < 256:
        for item in items:
            results.append(_header(item))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(_header, items, chunksize=64):
                results.append(result)
                bar.update()
    bar.close()
    return results


def _load_index(path: Path | None) -> dict[str, tuple[str, str, float]]:
    if path is None or not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return {row[0]: (row[1], row[2], float(row[3])) for row in rows[1:] if len(row) == 4}


def _save_index(path: Path | None, index: dict[str, tuple[str, str, float]]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(INDEX_HEADER)
        writer.writerows((sop, *values) for sop, values in sorted(index.items()))


def read_kaggle(
    data_dir: Path, labels_csv: Path, *, index_cache: Path | None = None, workers: int = 1, progress: bool = True
) -> SliceTable:
    """Every labelled slice that has a readable ``ID_<sop>.dcm`` file under ``data_dir``.

    Parameters
    ----------
    data_dir
        Directory with the DICOM files (searched recursively for ``ID_*.dcm``).
    labels_csv
        ``stage_2_train.csv``.
    index_cache
        CSV caching (id, study, series, z) from the headers, so a second run skips the scan.
    workers
        Processes for the header scan.
    progress
        Show a tqdm bar.

    Raises
    ------
    TrainingDataError
        Missing directory or CSV, malformed CSV, or no labelled slice with a readable file.
    """
    if not data_dir.is_dir():
        raise TrainingDataError(f"data directory {str(data_dir)!r} does not exist")
    labels = read_labels(labels_csv)
    files = {path.stem: path for path in data_dir.rglob("ID_*.dcm")}
    wanted = sorted(set(labels) & set(files))
    _log_unmatched(set(labels) - set(files), set(files) - set(labels))
    index = _load_index(index_cache)
    todo = [sop for sop in wanted if sop not in index]
    if todo:
        headers = scan_headers([files[s] for s in todo], workers=workers, progress=progress)
        for sop, header in zip(todo, headers, strict=True):
            if header is not None:
                index[sop] = header
        _save_index(index_cache, index)
    usable = [sop for sop in wanted if sop in index]
    if len(usable) < len(wanted):
        LOGGER.warning("%d labelled file(s) could not be read and are left out", len(wanted) - len(usable))
    if not usable:
        raise TrainingDataError(
            f"no labelled, readable ID_<sop>.dcm file under {str(data_dir)!r} matches {labels_csv.name}"
        )
    return _table(usable, files, labels, index)


def _table(
    usable: Iterable[str],
    files: dict[str, Path],
    labels: dict[str, np.ndarray],
    index: dict[str, tuple[str, str, float]],
) -> SliceTable:
    # Sort by study, series and z so that a study's slices sit together, in anatomical order.
    order = sorted(usable, key=lambda s: (index[s][0], index[s][1], index[s][2], s))
    return SliceTable(
        ids=np.array(order, dtype=object),
        paths=np.array([str(files[s]) for s in order], dtype=object),
        labels=np.stack([labels[s] for s in order]).astype(np.uint8),
        studies=np.array([index[s][0] for s in order], dtype=object),
    )


def _log_unmatched(without_file: set[str], without_label: set[str]) -> None:
    if without_file:
        LOGGER.warning("%d labelled slice(s) have no ID_<sop>.dcm file and are left out", len(without_file))
    if without_label:
        LOGGER.info("%d DICOM file(s) have no labels and are left out", len(without_label))


def split_by_study(table: SliceTable, *, validation_fraction: float, seed: int) -> tuple[SliceTable, SliceTable]:
    """Train/validation split by study (never by slice), stratified by whether a study has a bleed.

    Raises
    ------
    TrainingDataError
        A fraction outside (0, 1) or too few studies to put one on each side.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise TrainingDataError(f"validation fraction {validation_fraction!r} must be between 0 and 1")
    studies, inverse = np.unique(table.studies.astype(str), return_inverse=True)
    if len(studies) < 2:
        raise TrainingDataError(f"{len(studies)} study in the data: a split by study needs at least 2")
    positive = np.zeros(len(studies), dtype=bool)
    np.logical_or.at(positive, inverse, table.labels[:, 0] == 1)
    rng = np.random.default_rng(seed)
    validation = np.zeros(len(studies), dtype=bool)
    for stratum in (np.flatnonzero(positive), np.flatnonzero(~positive)):
        if len(stratum) == 0:
            continue
        count = round(len(stratum) * validation_fraction)
        count = min(max(count, 1 if len(stratum) > 1 else 0), len(stratum) - 1) if len(stratum) > 1 else 0
        validation[rng.choice(stratum, size=count, replace=False)] = True
    if not validation.any():
        validation[rng.integers(len(studies))] = True
    rows = validation[inverse]
    return table.subset(~rows), table.subset(rows)
