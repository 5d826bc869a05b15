"""The Kaggle CSV reader: labels, duplicates, malformed rows named by line."""

import numpy as np
import pytest

from triage.domain import CLASSES
from triage.training.kaggle import SliceTable, TrainingDataError, read_labels, split_by_study


def _write(path, rows):
    path.write_text("ID,Label\n" + "".join(f"{a},{b}\n" for a, b in rows))
    return path


def _rows(sop, values):
    return [(f"{sop}_{name}", v) for name, v in zip(CLASSES, values, strict=True)]


def test_reads_labels_and_tolerates_identical_duplicates(tmp_path):
    rows = _rows("ID_abc123", [1, 0, 0, 0, 0, 1]) + _rows("ID_def456", [0] * 6) + [("ID_abc123_any", 1)]
    labels = read_labels(_write(tmp_path / "l.csv", rows))
    assert labels["ID_abc123"].tolist() == [1, 0, 0, 0, 0, 1]
    assert labels["ID_def456"].tolist() == [0] * 6


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("ID_abc_any", 2)], "line 2: label '2' is not 0 or 1"),
        ([("abc_any", 1)], "line 2: ID 'abc_any'"),
        ([("ID_abc_bleed", 1)], "ID 'ID_abc_bleed'"),
        ([("ID_abc_any", 1)], "lack some of the six classes"),
        (_rows("ID_abc", [1, 1, 0, 0, 0, 0]) + [("ID_abc_any", 0)], "line 8: 'ID_abc_any' appears again"),
    ],
)
def test_malformed_csv_is_refused_naming_the_line(tmp_path, rows, message):
    with pytest.raises(TrainingDataError, match=message):
        read_labels(_write(tmp_path / "l.csv", rows))


def test_header_and_missing_file(tmp_path):
    (tmp_path / "bad.csv").write_text("sop,label\n")
    with pytest.raises(TrainingDataError, match="header"):
        read_labels(tmp_path / "bad.csv")
    with pytest.raises(TrainingDataError, match="does not exist"):
        read_labels(tmp_path / "none.csv")


def test_split_is_by_study_and_stratified():
    studies = np.repeat([f"1.2.{i}" for i in range(40)], 8)
    labels = np.zeros((len(studies), 6), np.uint8)
    labels[: 20 * 8 : 2, 0] = 1  # the first 20 studies have bleeds
    table = SliceTable(np.arange(len(studies)).astype(object), studies.astype(object), labels, studies.astype(object))
    train, validation = split_by_study(table, validation_fraction=0.25, seed=0)
    assert not set(train.studies) & set(validation.studies)
    assert len(train) + len(validation) == len(table)
    assert validation.summary()["studies"] == 10 and validation.summary()["positive_studies"] == 5
    again, _ = split_by_study(table, validation_fraction=0.25, seed=0)
    assert list(again.ids) == list(train.ids)
    with pytest.raises(TrainingDataError, match="validation fraction 1.5"):
        split_by_study(table, validation_fraction=1.5, seed=0)
