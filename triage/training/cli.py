"""Arguments and entry points of ``triage train`` and ``triage evaluate``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from triage.errors import UsageError
from triage.model.network import BACKBONES, INPUT_POOLS
from triage.training.report import figure

LOGGER = logging.getLogger(__name__)


def default_workers() -> int:
    """Data-loading processes: one core is left to the training process itself (at most 8)."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number of at least 1")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return value


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="directory of ID_<sop>.dcm files")
    p.add_argument("--labels", required=True, metavar="CSV", help="stage_2_train.csv (ID_<sop>_<class>,Label)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--workers", type=int, default=default_workers(), metavar="N",
                   help="data-loading processes (default: CPU cores - 1)")
    p.add_argument("--calibrate", action="store_true",
                   help="choose thresholds (any: --target-sensitivity; subtypes: best F1); write them to model.json")
    p.add_argument("--target-sensitivity", type=float, default=0.95, metavar="S",
                   help="sensitivity the calibrated thresholds reach (default 0.95)")
    p.add_argument("--bootstrap", type=_positive_int, default=1000, metavar="N",
                   help="bootstrap resamples for the AUC intervals (default 1000)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``triage train`` (DESIGN.md section 3; docs/training.md explains each)."""
    _add_common(p)
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="model directory to write")
    p.add_argument("--backbone", choices=sorted(BACKBONES), default="resnet50", help="default resnet50")
    p.add_argument("--image-size", type=int, choices=(448, 224), default=448, help="model input side (default 448)")
    p.add_argument("--input-pool", type=int, choices=INPUT_POOLS, default=1,
                   help="extra average-pooling in front of the network (2 or 4: cheaper, for CPU demos)")
    p.add_argument("--windowing", choices=("sigmoid", "linear"), default="sigmoid")
    p.add_argument("--epochs", type=_positive_int, default=10)
    p.add_argument("--batch-size", type=_positive_int, default=32, help="slices per balanced batch (default 32)")
    p.add_argument("--steps-per-epoch", type=_positive_int, metavar="N",
                   help="batches per epoch (default: enough to see every positive slice once)")
    p.add_argument("--learning-rate", type=float, default=3e-4, metavar="LR", help="AdamW peak rate (one-cycle)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--patience", type=_positive_int, default=3, help="epochs without a better validation loss")
    p.add_argument("--keep", choices=("best", "last"), default="best",
                   help="weights kept per stage: the epoch with the best validation loss, or the last one")
    p.add_argument("--stage", choices=("both", "detect", "subtype"), default="both",
                   help="train both stages, or one (keeping the other from the model in --out)")
    p.add_argument("--init-weights", default="imagenet", metavar="imagenet|random|PATH",
                   help="ImageNet via torchvision (random if unavailable), random, or a local state dict file")
    p.add_argument("--subtype-init", choices=("detect", "same"), default="detect",
                   help="stage 2 starts from the trained stage-1 backbone (detect, default) or like stage 1 (same)")
    p.add_argument("--validation-fraction", type=_fraction, default=0.1, metavar="F",
                   help="share of studies held out for validation (default 0.1)")
    p.add_argument("--max-validation-slices", type=_positive_int, metavar="N", help="cap the validation split")
    p.add_argument("--no-augment", action="store_true", help="no flips or shifts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in the work directory")
    p.add_argument("--work-dir", metavar="DIR", help="checkpoints, header index, validation report "
                   "(default MODEL_DIR.work)")
    p.add_argument("--name", help="model name in model.json (default ich-<backbone>-<size>)")


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``triage evaluate``."""
    p.add_argument("--model", required=True, metavar="MODEL_DIR")
    _add_common(p)
    p.add_argument("--out", metavar="DIR", help="write metrics.json, report.md, roc.png, pr.png, predictions.csv")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    p.add_argument("--batch-size", type=_positive_int, default=16)


def train_command(args: argparse.Namespace) -> int:
    """Run ``triage train``; returns the exit code."""
    from triage.training.loop import TrainConfig
    from triage.training.train import TrainRequest, train_model

    init = args.init_weights
    if init not in ("imagenet", "random") and not Path(init).is_file():
        raise UsageError(f"--init-weights {init!r} is neither imagenet, random, nor an existing file")
    config = TrainConfig(
        backbone=args.backbone, image_size=args.image_size, windowing=args.windowing, input_pool=args.input_pool,
        epochs=args.epochs, batch_size=args.batch_size, steps_per_epoch=args.steps_per_epoch,
        learning_rate=args.learning_rate, weight_decay=args.weight_decay, patience=args.patience,
        validation_fraction=args.validation_fraction, max_validation_slices=args.max_validation_slices,
        augment=not args.no_augment, workers=args.workers, device=args.device, threads=args.threads,
        init_weights=init, subtype_init=args.subtype_init, keep=args.keep, seed=args.seed,
        progress=not args.no_progress,
    )
    request = TrainRequest(
        data_dir=Path(args.data), labels_csv=Path(args.labels), out=Path(args.out),
        work_dir=Path(args.work_dir) if args.work_dir else None, name=args.name, stages=args.stage,
        resume=args.resume, calibrate=args.calibrate, sensitivity=args.target_sensitivity,
        resamples=args.bootstrap,
    )
    metadata = train_model(config, request)
    _print_summary(metadata.metrics.get("validation", {}), f"model {metadata.version} in {args.out} (validation)")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    """Run ``triage evaluate``; returns the exit code."""
    from triage.training.evaluate import evaluate_model

    metrics = evaluate_model(
        Path(args.model), Path(args.data), Path(args.labels), Path(args.out) if args.out else None,
        device=args.device, backend=args.backend, batch_size=args.batch_size, workers=args.workers,
        calibrate=args.calibrate, sensitivity=args.target_sensitivity, resamples=args.bootstrap,
        progress=not args.no_progress,
    )
    _print_summary(metrics, f"evaluation of {metrics.get('model_version', args.model)}")
    return 0


def _print_summary(metrics: dict, title: str) -> None:
    """Per-class figures on standard output (the CLI's result; logs go to standard error)."""
    if not metrics:
        return
    lines = [title, f"{'class':<18}{'P':>7}{'R':>7}{'F1':>7}{'num':>7}{'AUC':>8}   95% interval"]
    for name, m in metrics["classes"].items():
        low, high = m["auc_ci95"]
        interval = "n/a" if low is None else f"{low:.4f}-{high:.4f}"
        auc = figure(m["auc"], 4)
        lines.append(f"{name:<18}{m['precision']:7.2f}{m['recall']:7.2f}{m['f1']:7.2f}{m['count']:7d}{auc:>8}   "
                     f"{interval}")
    lines.append(f"weighted log loss {metrics['weighted_log_loss']:.4f}; "
                 f"study AUC any {figure(metrics.get('study_auc_any'), 4)}")
    if "study_any" in metrics:
        s = metrics["study_any"]
        lines.append(f"studies flagged at P(any) >= {s['threshold']:.3f}: {s['flagged']} (sensitivity "
                     f"{figure(s['sensitivity'], 3)}, specificity {figure(s['specificity'], 3)})")
    sys.stdout.write("\n".join(lines) + "\n")
