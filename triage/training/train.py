"""``triage train``: read the Kaggle layout, split by study, train both stages, write the model directory,
evaluate it on the validation split (optionally calibrating its thresholds)."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from triage.errors import UsageError
from triage.imaging import IMAGE_SIZES, WINDOWS
from triage.model import (
    Classifier,
    ModelMetadata,
    load_model_directory,
    read_metadata,
    save_model_directory,
    update_metadata,
)
from triage.training.evaluate import DEFAULT_SENSITIVITY, evaluate_table, write_outputs
from triage.training.kaggle import SliceTable, read_kaggle, split_by_study
from triage.training.loop import StageResult, StageTrainer, TrainConfig, limit_validation
from triage.training.plots import training_curve

LOGGER = logging.getLogger(__name__)

STAGE_CHOICES = ("both", "detect", "subtype")


@dataclass(frozen=True)
class TrainRequest:
    """Where the data is, where the model goes, and what to do besides the recipe."""

    data_dir: Path
    labels_csv: Path
    out: Path
    work_dir: Path | None = None
    name: str | None = None
    stages: str = "both"
    resume: bool = False
    calibrate: bool = False
    sensitivity: float = DEFAULT_SENSITIVITY
    resamples: int = 1000

    @property
    def work(self) -> Path:
        """Checkpoints, header index and validation report (default: ``<out>.work`` beside the model)."""
        return self.work_dir or self.out.with_name(self.out.name + ".work")


def check_recipe(config: TrainConfig, request: TrainRequest) -> None:
    """Refuse options that cannot work, naming the value (before any slow step)."""
    if config.image_size not in IMAGE_SIZES:
        raise UsageError(f"--image-size {config.image_size} is not supported: expected one of {IMAGE_SIZES}")
    if config.keep not in ("best", "last"):
        raise UsageError(f"--keep {config.keep!r} is not one of ('best', 'last')")
    if config.subtype_init not in ("detect", "same"):
        raise UsageError(f"--subtype-init {config.subtype_init!r} is not one of ('detect', 'same')")
    if request.stages not in STAGE_CHOICES:
        raise UsageError(f"--stage {request.stages!r} is not one of {STAGE_CHOICES}")
    for name in ("epochs", "batch_size"):
        if getattr(config, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} {getattr(config, name)} must be at least 1")
    if request.stages != "both" and not (request.out / "model.json").exists():
        raise UsageError(
            f"--stage {request.stages} keeps the other stage of an existing model, but {str(request.out)!r} has none"
        )
    if request.stages != "both":
        _check_kept_stage(config, request.out)
    if not 0.0 < request.sensitivity <= 1.0:
        raise UsageError(f"--target-sensitivity {request.sensitivity} must be in (0, 1]")


def _check_kept_stage(config: TrainConfig, model_dir: Path) -> None:
    """The stage kept from an existing model must expect the same input as the one trained now."""
    kept = read_metadata(model_dir)
    wanted = {"backbone": config.backbone, "image_size": config.image_size, "input_pool": config.input_pool,
              "windowing": config.windowing}
    differ = {key: getattr(kept, key) for key, value in wanted.items() if getattr(kept, key) != value}
    if differ:
        raise UsageError(f"the model in {str(model_dir)!r} has {differ}; train the other stage with the same options")


def _tables(config: TrainConfig, request: TrainRequest) -> tuple[SliceTable, SliceTable]:
    table = read_kaggle(request.data_dir, request.labels_csv, index_cache=request.work / "index.csv",
                        workers=max(1, config.workers), progress=config.progress)
    train, validation = split_by_study(table, validation_fraction=config.validation_fraction, seed=config.seed)
    validation = limit_validation(validation, config.max_validation_slices, config.seed)
    LOGGER.info("training on %s; validating on %s", train.summary(), validation.summary())
    return train, validation


def train_model(config: TrainConfig, request: TrainRequest) -> ModelMetadata:
    """Train the stages asked for and write the model directory ``request.out``.

    Returns
    -------
    ModelMetadata
        What ``model.json`` holds at the end (validation metrics included).
    """
    check_recipe(config, request)
    started = time.monotonic()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    train, validation = _tables(config, request)
    networks: dict[str, torch.nn.Module] = {}
    results: dict[str, StageResult] = {}
    if request.stages != "both":
        _, networks = load_model_directory(request.out)
    for stage in ("detect", "subtype"):
        if request.stages in ("both", stage):
            init_from = networks.get("detect") if stage == "subtype" and config.subtype_init == "detect" else None
            trainer = StageTrainer(stage, config, train, validation, request.work / f"checkpoint-{stage}.pt",
                                   init_from=init_from)
            results[stage] = trainer.run(resume=request.resume)
            networks[stage] = results[stage].network.to("cpu")
    metadata = _save(config, request, networks, results, train, validation, time.monotonic() - started)
    return _validate(config, request, metadata, validation)


def _save(config: TrainConfig, request: TrainRequest, networks: dict[str, torch.nn.Module],
          results: dict[str, StageResult], train: SliceTable, validation: SliceTable, seconds: float) -> ModelMetadata:
    histories = {stage: result.history for stage, result in results.items()}
    training: dict[str, Any] = {
        "data": str(request.data_dir), "labels": request.labels_csv.name,
        "train": train.summary(), "validation": validation.summary(), "recipe": config.recipe(),
        "stages_trained": sorted(results), "seconds": round(seconds, 1),
        "history": histories,
        "best_epoch": {stage: r.best_epoch for stage, r in results.items()},
        "stopped_early": {stage: r.stopped_early for stage, r in results.items()},
    }
    origins = {stage: r.initialisation for stage, r in results.items()}
    tmp = request.out.with_name(request.out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    metadata = save_model_directory(
        tmp, networks, name=request.name or f"ich-{config.backbone}-{config.image_size}",
        backbone=config.backbone, image_size=config.image_size, windowing=config.windowing,
        input_pool=config.input_pool, windows=dict(WINDOWS),
        initialisation="; ".join(f"{stage}: {origin}" for stage, origin in origins.items()),
        training=training,
    )
    training_curve(histories, tmp / "training-curve.png")
    _replace_directory(tmp, request.out)
    return metadata


def _replace_directory(new: Path, target: Path) -> None:
    """Put the finished model where it belongs; an older model there is kept as ``<name>.previous``."""
    if target.exists():
        previous = target.with_name(target.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        target.rename(previous)
    new.rename(target)


def _validate(config: TrainConfig, request: TrainRequest, metadata: ModelMetadata,
              validation: SliceTable) -> ModelMetadata:
    """Evaluate on the validation split with the worker's code path; write thresholds and metrics."""
    device = config.device
    classifier = Classifier(request.out, device=device, batch_size=config.batch_size)
    evaluation = evaluate_table(
        classifier, validation, calibrate=request.calibrate, sensitivity=request.sensitivity,
        resamples=request.resamples, workers=config.workers, progress=config.progress,
    )
    changes: dict[str, Any] = {"metrics": {"validation": evaluation.metrics}}
    if request.calibrate:
        changes.update(thresholds=evaluation.thresholds, detection_threshold=evaluation.detection_threshold)
    metadata = update_metadata(request.out, **changes)
    facts = {
        "model": {"model": metadata.version, "backbone": metadata.backbone,
                  "input": f"{metadata.image_size} px, {metadata.windowing} windows",
                  "thresholds": f"calibrated for sensitivity {request.sensitivity}" if request.calibrate
                  else "defaults (0.5)"},
        "data": {"data": f"validation split of {request.data_dir}", **validation.summary()},
    }
    report = write_outputs(evaluation, validation, request.work / "validation", title=
                           f"Validation of {metadata.version}", facts=facts)
    LOGGER.info("model %s written to %s; validation report %s", metadata.version, request.out, report)
    return metadata
