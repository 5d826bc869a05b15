"""Tiny end-to-end runs on phantoms: `triage train` + `triage evaluate`, determinism, resume, bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from triage.cli import main
from triage.model import Classifier, read_metadata
from triage.model.directory import sha256_file
from triage.synth import KAGGLE_CSV, KAGGLE_DIR, write_dataset
from triage.training import TrainConfig, TrainRequest, train_model
from triage.training.loop import StageTrainer

TINY = ["--backbone", "resnet18", "--image-size", "224", "--input-pool", "4", "--batch-size", "8",
        "--steps-per-epoch", "2", "--init-weights", "random", "--validation-fraction", "0.5",
        "--bootstrap", "20", "--no-progress"]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms") / "set"
    write_dataset(root, studies=6, seed=11, slices=8, positive_fraction=0.5, kaggle=True)
    return root / KAGGLE_DIR, root / KAGGLE_CSV


def _config(**changes):
    base = dict(backbone="resnet18", image_size=224, input_pool=4, epochs=1, batch_size=8, steps_per_epoch=2,
                init_weights="random", validation_fraction=0.5, workers=0, device="cpu", progress=False, seed=5)
    base.update(changes)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def trained(phantoms, tmp_path_factory):
    """One model trained from the command line (2 epochs per stage, calibrated), with its work directory."""
    data, labels = phantoms
    model = tmp_path_factory.mktemp("trained") / "model"
    code = main(["train", "--data", str(data), "--labels", str(labels), "--out", str(model), "--epochs", "2",
                 "--workers", "1", "--seed", "5", "--calibrate", *TINY])
    assert code == 0
    return model


def test_train_writes_a_complete_model_directory(trained, capsys):
    meta = read_metadata(trained)
    assert meta.version.startswith("ich-resnet18-224-")
    assert meta.backbone == "resnet18" and meta.image_size == 224 and meta.input_pool == 4
    assert meta.initialisation.startswith("detect: random")
    assert meta.training["train"]["studies"] + meta.training["validation"]["studies"] == 6
    assert [row["epoch"] for row in meta.training["history"]["detect"]] == [1, 2]
    assert meta.metrics["validation"]["classes"]["any"]["count"] == meta.training["validation"]["positive_any"]
    assert meta.detection_threshold == min(meta.thresholds.values())  # --calibrate wrote them
    assert (trained / "training-curve.png").stat().st_size > 1000
    assert "| | Any P | R | F1 | num |" in (trained.parent / "model.work" / "validation" / "report.md").read_text()
    Classifier(trained, device="cpu")


def test_evaluate_writes_metrics_report_and_plots(trained, phantoms, tmp_path, capsys):
    data, labels = phantoms
    out = tmp_path / "report"
    code = main(["evaluate", "--model", str(trained), "--data", str(data), "--labels", str(labels),
                 "--out", str(out), "--bootstrap", "20", "--workers", "0", "--no-progress", "--backend", "onnx"])
    assert code == 0
    assert "weighted log loss" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"):
        assert {"precision", "recall", "f1", "count", "auc", "auc_ci95"} <= set(metrics["classes"][name])
    assert metrics["slices"] == 48 and metrics["studies"] == 6
    assert metrics["model_version"] == read_metadata(trained).version
    assert {"weighted_log_loss", "study_auc_any"} <= set(metrics)
    report = (out / "report.md").read_text()
    assert "| | Any P | R | F1 | num |" in report and "seed paper W4" in report
    assert (out / "roc.png").stat().st_size > 1000 and (out / "pr.png").stat().st_size > 1000
    rows = (out / "predictions.csv").read_text().splitlines()
    assert len(rows) == 49
    probabilities = np.array([[float(v) for v in row.split(",")[2:8]] for row in rows[1:]])
    assert (probabilities[:, 1:] <= probabilities[:, :1] + 1e-6).all()  # no subtype without a bleed


def test_resume_after_an_interruption_gives_the_same_model(trained, phantoms, tmp_path, monkeypatch):
    # Same recipe as the `trained` fixture, but no worker process: also shows that the loader
    # processes do not change the result (a seed gives the same model on the CPU).
    data, labels = phantoms
    config = _config(epochs=2, seed=5)
    original = StageTrainer._save
    calls = []

    def save_then_crash(self, *args, **kwargs):
        original(self, *args, **kwargs)
        calls.append(self.stage)
        if calls == ["detect"]:
            raise KeyboardInterrupt  # stopped after the first epoch of stage 1

    monkeypatch.setattr(StageTrainer, "_save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train_model(config, TrainRequest(data, labels, tmp_path / "m", resamples=10))
    monkeypatch.setattr(StageTrainer, "_save", original)
    assert not (tmp_path / "m").exists()
    train_model(config, TrainRequest(data, labels, tmp_path / "m", resume=True, resamples=10))
    for stage in ("detect", "subtype"):
        assert sha256_file(tmp_path / "m" / f"{stage}.safetensors") == sha256_file(trained / f"{stage}.safetensors")
    assert [row["epoch"] for row in read_metadata(tmp_path / "m").training["history"]["detect"]] == [1, 2]


def test_resume_refuses_another_recipe(trained, phantoms, tmp_path):
    data, labels = phantoms
    work = trained.parent / "model.work"
    with pytest.raises(Exception, match=r"another recipe \(differs in \['learning_rate'\]\)"):
        train_model(_config(epochs=2, seed=5, learning_rate=0.1),
                    TrainRequest(data, labels, tmp_path / "m", work_dir=work, resume=True))
    assert not (tmp_path / "m").exists()


def test_one_stage_retrained_keeps_the_other(trained, phantoms, tmp_path):
    data, labels = phantoms
    model = tmp_path / "m"
    shutil.copytree(trained, model)
    train_model(_config(seed=9), TrainRequest(data, labels, model, stages="subtype", resamples=10))
    assert sha256_file(model / "detect.safetensors") == sha256_file(trained / "detect.safetensors")
    assert sha256_file(model / "subtype.safetensors") != sha256_file(trained / "subtype.safetensors")
    assert (tmp_path / "m.previous" / "model.json").exists()
    assert list(read_metadata(model).training["history"]) == ["subtype"]
    Classifier(model, device="cpu")
    with pytest.raises(Exception, match=r"has \{'input_pool': 4\}; train the other stage with the same options"):
        train_model(_config(input_pool=2), TrainRequest(data, labels, model, stages="detect"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--stage", "subtype"], "keeps the other stage of an existing model"),
        (["--init-weights", "/nonexistent/weights.pth"], "neither imagenet, random, nor an existing file"),
    ],
)
def test_bad_training_options_exit_2(phantoms, tmp_path, capsys, extra, message):
    data, labels = phantoms
    code = main(["train", "--data", str(data), "--labels", str(labels), "--out", str(tmp_path / "m"),
                 *TINY, *extra])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_missing_data_exits_2(tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("ID,Label\n")
    code = main(["train", "--data", str(tmp_path / "none"), "--labels", str(labels), "--out", str(tmp_path / "m"),
                 *TINY])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
    code = main(["evaluate", "--model", str(tmp_path / "nomodel"), "--data", str(tmp_path), "--labels", str(labels)])
    assert code == 1
    assert "model directory" in capsys.readouterr().err


def test_unlabelled_directory_is_refused(phantoms, tmp_path):
    data, _ = phantoms
    labels = tmp_path / "labels.csv"
    labels.write_text("ID,Label\n" + "".join(f"ID_000000000_{c},0\n" for c in
                                             ("any", "epidural", "intraparenchymal", "intraventricular",
                                              "subarachnoid", "subdural")))
    with pytest.raises(Exception, match="no labelled, readable"):
        train_model(_config(), TrainRequest(Path(data), labels, tmp_path / "m"))


@pytest.mark.parametrize(("images_per_second", "epochs"), [(5.0, 6), (100.0, 12), (1e6, 40)])
def test_the_demo_recipe_fits_the_budget_but_never_trains_too_little(monkeypatch, images_per_second, epochs):
    """A slow laptop (5 images/s) gets the 6 epochs a usable model needs, not a 3-minute model that flags all."""
    from triage.training import demo

    monkeypatch.setattr(demo, "training_speed", lambda config: images_per_second)
    assert demo.demo_recipe(3.0, positives=445).epochs == epochs


def test_demo_model_is_trained_on_phantoms_and_loads(tmp_path):
    from triage.training import train_demo_model

    out = train_demo_model(tmp_path / "model", work_dir=tmp_path / "work", minutes=0.01, studies=6, min_epochs=2)
    meta = read_metadata(out)
    assert meta.name == "demo-phantom-resnet18" and meta.input_pool == 2 and meta.image_size == 224
    assert meta.training["recipe"]["keep"] == "last" and meta.training["recipe"]["epochs"] == 2
    history = meta.training["history"]["detect"]
    assert history[0]["validation_loss"] is None and history[-1]["validation_loss"] is not None
    assert "validation" in meta.metrics
    assert Classifier(out, device="cpu").predict(np.zeros((1, 3, 224, 224), np.float32)).shape == (1, 6)
