"""Training of one stage: balanced batches, BCE, AdamW with a one-cycle schedule, early stopping,
checkpoints for ``--resume``, tqdm progress with loss and throughput."""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import nn
from tqdm import tqdm

from triage.errors import UsageError
from triage.model.network import build_network, initialise, load_backbone
from triage.model.runtime import resolve_device
from triage.training.dataset import SliceDataset, loader
from triage.training.kaggle import SliceTable
from triage.training.sampler import DETECT_SHARES, SUBTYPE_SHARES, BalancedBatchSampler, default_steps

LOGGER = logging.getLogger(__name__)

#: Per stage: the label columns it learns and the pool shares of its batches.
STAGE_COLUMNS: Mapping[str, slice] = {"detect": slice(0, 1), "subtype": slice(1, 6)}
STAGE_SHARES: Mapping[str, Mapping[str, float]] = {"detect": DETECT_SHARES, "subtype": SUBTYPE_SHARES}


@dataclass
class TrainConfig:
    """The recipe of a training run (recorded in ``model.json``)."""

    backbone: str = "resnet50"
    image_size: int = 448
    windowing: str = "sigmoid"
    input_pool: int = 1
    epochs: int = 10
    batch_size: int = 32
    steps_per_epoch: int | None = None
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    patience: int = 3
    validation_fraction: float = 0.1
    max_validation_slices: int | None = None
    augment: bool = True
    workers: int = 1
    device: str = "auto"
    threads: int = 0
    init_weights: str | None = "imagenet"
    subtype_init: str = "detect"
    keep: str = "best"
    seed: int = 0
    progress: bool = True

    def recipe(self) -> dict[str, Any]:
        """The fields that change the result (for the metadata and the resume check)."""
        data = asdict(self)
        for key in ("workers", "device", "threads", "progress"):
            data.pop(key)
        return data


@dataclass
class StageResult:
    """The best network of a stage and how training went."""

    network: nn.Module
    history: list[dict[str, float | None]] = field(default_factory=list)
    best_epoch: int = 0
    best_validation_loss: float = math.inf
    initialisation: str = "random"
    stopped_early: bool = False


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (a fixed seed gives the same run on the CPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def stage_tables(stage: str, train: SliceTable, validation: SliceTable) -> tuple[SliceTable, SliceTable]:
    """Stage 2 trains and validates on positive slices only; stage 1 on everything."""
    if stage == "detect":
        return train, validation
    return train.subset(train.labels[:, 0] == 1), validation.subset(validation.labels[:, 0] == 1)


def limit_validation(table: SliceTable, limit: int | None, seed: int) -> SliceTable:
    """At most ``limit`` slices, drawn by whole studies (so study-level figures stay meaningful)."""
    if limit is None or len(table) <= limit:
        return table
    studies = np.unique(table.studies.astype(str))
    order = np.random.default_rng(seed).permutation(studies)
    keep: set[str] = set()
    count = 0
    sizes = dict(zip(*np.unique(table.studies.astype(str), return_counts=True), strict=True))
    for study in order:
        if count >= limit:
            break
        keep.add(study)
        count += int(sizes[study])
    return table.subset(np.array([s in keep for s in table.studies.astype(str)]))


class StageTrainer:
    """Trains one stage (``detect`` or ``subtype``) and checkpoints after every epoch."""

    def __init__(
        self,
        stage: str,
        config: TrainConfig,
        train: SliceTable,
        validation: SliceTable,
        checkpoint: Path,
        *,
        init_from: nn.Module | None = None,
    ) -> None:
        if stage not in STAGE_COLUMNS:
            raise UsageError(f"unknown stage {stage!r}: expected detect or subtype")
        self.stage, self.config, self.checkpoint = stage, config, checkpoint
        self.init_from = init_from
        self.train_table, self.validation_table = stage_tables(stage, train, validation)
        if len(self.train_table) == 0 or len(self.validation_table) == 0:
            raise UsageError(
                f"stage {stage!r} has {len(self.train_table)} training and {len(self.validation_table)} "
                "validation slice(s): it needs at least one of each"
            )
        self.columns = STAGE_COLUMNS[stage]
        self.device = resolve_device(config.device)
        self.steps = config.steps_per_epoch or default_steps(
            self.train_table.labels, config.batch_size, STAGE_SHARES[stage]
        )

    def _network(self) -> tuple[nn.Module, str]:
        seed_everything(self.config.seed + (0 if self.stage == "detect" else 1))
        outputs = self.columns.stop - self.columns.start
        network = build_network(self.config.backbone, outputs, input_pool=self.config.input_pool)
        if self.init_from is not None:
            load_backbone(network, self.init_from.state_dict(), "the trained stage-1 network")
            origin = "the trained detect stage"
        else:
            origin = initialise(network, self.config.backbone, self.config.init_weights)
        network.to(self.device)
        network.to(memory_format=torch.channels_last)
        return network, origin

    def run(self, *, resume: bool = False) -> StageResult:
        """Train for up to ``epochs`` epochs, stopping when the validation loss stops improving."""
        config = self.config
        network, origin = self._network()
        optimizer = torch.optim.AdamW(
            network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, fused=True
        )
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.learning_rate, total_steps=max(2, config.epochs * self.steps), pct_start=0.15
        )
        result = StageResult(network=network, initialisation=origin)
        best_state = copy.deepcopy(network.state_dict())
        start, stale = 0, 0
        if resume and self.checkpoint.exists():
            start, stale, best_state = self._restore(network, optimizer, schedule, result)
        sampler = BalancedBatchSampler(
            self.train_table.labels, batch_size=config.batch_size, steps=self.steps,
            shares=STAGE_SHARES[self.stage], seed=config.seed,
        )
        dataset = SliceDataset(
            self.train_table, image_size=config.image_size, windowing=config.windowing, augmented=config.augment
        )
        for epoch in range(start, config.epochs):
            if result.stopped_early:
                break
            sampler.set_epoch(epoch)
            started = time.monotonic()
            train_loss = self._train_epoch(network, optimizer, schedule, loader(dataset, workers=config.workers,
                                                                              batch_sampler=sampler), epoch)
            seconds = time.monotonic() - started
            if config.keep == "last" and epoch + 1 < config.epochs:
                # The last epoch is kept whatever happens: validation (and early stopping) would only cost time.
                result.history.append(self._row(epoch, train_loss, None, schedule, seconds))
                LOGGER.info("stage %s epoch %d/%d: train loss %.4f", self.stage, epoch + 1, config.epochs, train_loss)
                self._save(network, optimizer, schedule, result, epoch + 1, stale, best_state)
                continue
            validation_loss, _ = self.validate(network)
            result.history.append(self._row(epoch, train_loss, validation_loss, schedule, seconds))
            if validation_loss < result.best_validation_loss - 1e-4:
                result.best_validation_loss, result.best_epoch, stale = validation_loss, epoch + 1, 0
                best_state = copy.deepcopy(network.state_dict())
            else:
                stale += 1
            result.stopped_early = stale >= config.patience and epoch + 1 < config.epochs
            LOGGER.info(
                "stage %s epoch %d/%d: train loss %.4f, validation loss %.4f%s", self.stage, epoch + 1,
                config.epochs, train_loss, validation_loss, " (best)" if stale == 0 else "",
            )
            self._save(network, optimizer, schedule, result, epoch + 1, stale, best_state)
        if result.stopped_early:
            LOGGER.info("stage %s stopped early: no better validation loss for %d epoch(s)", self.stage, stale)
        if self.config.keep == "best":
            network.load_state_dict(best_state)
        else:
            result.best_epoch = len(result.history)
        return result

    def _row(self, epoch: int, train_loss: float, validation_loss: float | None, schedule: Any,
             seconds: float) -> dict[str, float | None]:
        return {
            "epoch": epoch + 1, "train_loss": train_loss, "validation_loss": validation_loss,
            "learning_rate": float(schedule.get_last_lr()[0]), "seconds": seconds,
            "images_per_second": self.steps * self.config.batch_size / max(seconds, 1e-9),
        }

    def _targets(self, labels: torch.Tensor) -> torch.Tensor:
        return labels[:, self.columns].to(self.device)

    def _train_epoch(self, network: nn.Module, optimizer: Any, schedule: Any, batches: Any, epoch: int) -> float:
        network.train()
        total, seen = 0.0, 0
        bar = tqdm(batches, total=self.steps, desc=f"{self.stage} epoch {epoch + 1}/{self.config.epochs}",
                   unit="batch", disable=not self.config.progress, leave=False)
        started = time.monotonic()
        for images, labels in bar:
            images = images.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            loss = F.binary_cross_entropy_with_logits(network(images), self._targets(labels))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(images)
            seen += len(images)
            bar.set_postfix(loss=f"{total / seen:.4f}", img_s=f"{seen / (time.monotonic() - started):.1f}")
        return total / max(seen, 1)

    def validate(self, network: nn.Module) -> tuple[float, np.ndarray]:
        """Mean BCE over the validation slices of this stage, and their probabilities."""
        network.eval()
        dataset = SliceDataset(self.validation_table, image_size=self.config.image_size,
                               windowing=self.config.windowing)
        batches = loader(dataset, workers=self.config.workers, batch_size=self.config.batch_size)
        total, outputs = 0.0, []
        with torch.inference_mode():
            for images, labels in tqdm(batches, desc=f"{self.stage} validation", unit="batch",
                                       disable=not self.config.progress, leave=False):
                images = images.to(self.device).contiguous(memory_format=torch.channels_last)
                logits = network(images).float()
                total += float(F.binary_cross_entropy_with_logits(logits, self._targets(labels), reduction="sum"))
                outputs.append(torch.sigmoid(logits).cpu().numpy())
        network.train()
        columns = self.columns.stop - self.columns.start
        return total / (len(dataset) * columns), np.concatenate(outputs)

    # -- checkpoints ------------------------------------------------------------------------------

    def _save(self, network: nn.Module, optimizer: Any, schedule: Any, result: StageResult, epoch: int,
              stale: int, best_state: dict[str, torch.Tensor]) -> None:
        state = {
            "stage": self.stage, "recipe": _plain(self.config.recipe()), "epoch": epoch, "stale": stale,
            "network": network.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            "best_state": best_state, "best_epoch": result.best_epoch,
            "best_validation_loss": result.best_validation_loss, "history": result.history,
            "stopped_early": result.stopped_early, "initialisation": result.initialisation,
        }
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.checkpoint.with_suffix(".tmp")
        torch.save(state, temporary)
        os.replace(temporary, self.checkpoint)

    def _restore(self, network: nn.Module, optimizer: Any, schedule: Any,
                 result: StageResult) -> tuple[int, int, dict[str, torch.Tensor]]:
        state = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
        recipe = _plain(self.config.recipe())
        changed = sorted(k for k in recipe if state["recipe"].get(k) != recipe[k])
        if state.get("stage") != self.stage or changed:
            raise UsageError(
                f"checkpoint {str(self.checkpoint)!r} was made with another recipe (differs in {changed}); "
                "train without --resume or with the same options"
            )
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        result.history = list(state["history"])
        result.best_epoch = int(state["best_epoch"])
        result.best_validation_loss = float(state["best_validation_loss"])
        result.stopped_early = bool(state["stopped_early"])
        result.initialisation = str(state["initialisation"])
        LOGGER.info("stage %s resumes after epoch %d of %d", self.stage, state["epoch"], self.config.epochs)
        return int(state["epoch"]), int(state["stale"]), state["best_state"]


def _plain(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """Only str/int/float/bool/None values, so the checkpoint loads with ``weights_only=True``."""
    return {k: v if v is None or isinstance(v, str | int | float | bool) else str(v) for k, v in recipe.items()}
