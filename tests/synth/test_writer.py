"""``triage synth``: layouts, label CSVs that match the files, repeatability, refusal of bad input."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pydicom
import pytest

from triage.cli import main
from triage.domain import CLASSES, SUBTYPES
from triage.errors import UsageError
from triage.imaging import z_position
from triage.synth import KAGGLE_CSV, KAGGLE_DIR, SLICE_CSV, STUDY_CSV, study_plan, write_dataset

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI")


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_cli_writes_one_folder_per_study_with_matching_labels(tmp_path, capsys):
    out = tmp_path / "phantoms"
    args = ["synth", str(out), "--studies", "4", "--seed", "3", "--slices", "6", "--positive-fraction", "0.5"]
    assert main(args) == 0
    summary = capsys.readouterr().out.strip()
    assert summary.startswith("wrote 4 studies (2 with hemorrhage), 24 slices") and "\n" not in summary
    assert sorted(p.name for p in out.iterdir()) == [SLICE_CSV, STUDY_CSV, *(f"study_{i:04d}" for i in range(1, 5))]
    slices = rows(out / SLICE_CSV)
    studies = rows(out / STUDY_CSV)
    assert len(slices) == 24 and len(studies) == 4
    assert list(slices[0]) == ["path", "sop_instance_uid", "study_instance_uid", "series_instance_uid",
                               "instance_number", "z", *CLASSES]
    for row in slices:
        ds = pydicom.dcmread(out / row["path"], stop_before_pixels=True)
        assert ds.SOPInstanceUID == row["sop_instance_uid"]
        assert ds.StudyInstanceUID == row["study_instance_uid"] and ds.SeriesInstanceUID == row["series_instance_uid"]
        assert int(ds.InstanceNumber) == int(row["instance_number"])
        assert z_position(ds) == pytest.approx(float(row["z"]), abs=1e-3)
        assert int(row["any"]) == max(int(row[s]) for s in SUBTYPES)
    for study in studies:
        mine = [r for r in slices if r["study_instance_uid"] == study["study_instance_uid"]]
        assert len(mine) == int(study["slices"]) == 6
        for name in CLASSES:
            assert int(study[name]) == max(int(r[name]) for r in mine)
    assert sum(int(s["any"]) for s in studies) == 2


def test_kaggle_layout_matches_the_rsna_csv(tmp_path):
    out = tmp_path / "rsna"
    summary = write_dataset(out, studies=3, seed=8, slices=5, positive_fraction=1.0, kaggle=True)
    assert "RSNA Kaggle layout" in summary
    files = sorted((out / KAGGLE_DIR).iterdir())
    assert len(files) == 15 and all(p.name.startswith("ID_") and p.suffix == ".dcm" for p in files)
    label_rows = rows(out / KAGGLE_CSV)
    assert list(label_rows[0]) == ["ID", "Label"] and len(label_rows) == 15 * 6
    sop = files[0].stem
    mine = [r for r in label_rows if r["ID"].startswith(sop + "_")]
    assert [r["ID"][len(sop) + 1 :] for r in mine] == [*SUBTYPES, "any"]  # the RSNA order
    labels = {r["ID"]: int(r["Label"]) for r in label_rows}
    slices = {r["sop_instance_uid"]: r for r in rows(out / SLICE_CSV)}
    studies = {r["study_instance_uid"] for r in rows(out / STUDY_CSV)}
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        row = slices[path.stem]
        assert str(ds.SOPInstanceUID) == path.stem
        assert str(ds.StudyInstanceUID) == row["study_instance_uid"] and row["study_instance_uid"] in studies
        for name in CLASSES:
            assert labels[f"{path.stem}_{name}"] == int(row[name])
    assert sum(labels[f"{p.stem}_any"] for p in files) > 0


def test_same_seed_writes_the_same_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, 5), (b, 5), (c, 6)):
        write_dataset(out, studies=2, seed=seed, slices=3)
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_positive_fraction_is_exact_and_subtypes_co_occur():
    plan = study_plan(200, 1, 0.3)
    positives = [subtypes for _, subtypes in plan if subtypes]
    assert len(positives) == 60
    assert any(len(s) >= 2 for s in positives)
    assert {s for subtypes in positives for s in subtypes} == set(SUBTYPES)
    assert len({seed for seed, _ in plan}) == 200
    assert study_plan(10, 1, 0.0) == [(seed, ()) for seed, _ in study_plan(10, 1, 0.0)]


def test_non_empty_output_is_refused_and_left_alone(tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["synth", str(out), "--studies", "1"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no staging folder left behind


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--studies", "0"], "--studies 0"),
        (["--studies", "1", "--slices", "0"], "--slices 0"),
        (["--studies", "1", "--positive-fraction", "1.5"], "--positive-fraction 1.5"),
        (["--studies", "1", "--seed", "-3"], "--seed -3"),
    ],
)
def test_bad_arguments_exit_2_with_the_value(tmp_path, capsys, args, message):
    out = tmp_path / "new"
    assert main(["synth", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_missing_parent_and_file_output_are_refused(tmp_path):
    with pytest.raises(UsageError, match="parent"):
        write_dataset(tmp_path / "no" / "such", studies=1, seed=0)
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        write_dataset(target, studies=1, seed=0)


def test_empty_existing_directory_is_used(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    write_dataset(out, studies=1, seed=2, slices=2, positive_fraction=0.0)
    assert (out / SLICE_CSV).is_file() and (out / "study_0001" / "IM0002.dcm").is_file()
