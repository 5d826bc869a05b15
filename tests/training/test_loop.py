"""Stage trainer pieces that need no training run."""

from pathlib import Path

import numpy as np
import pytest
import torch

from triage.errors import UsageError
from triage.model import build_network
from triage.training import SliceTable, StageTrainer, TrainConfig
from triage.training.loop import limit_validation, stage_tables


def _table(studies=4, per_study=5):
    ids = np.array([f"ID_{i:09x}" for i in range(studies * per_study)], dtype=object)
    labels = np.zeros((len(ids), 6), np.uint8)
    labels[::2, 0] = 1
    labels[::2, 5] = 1
    study = np.repeat([f"ID_s{i}" for i in range(studies)], per_study).astype(object)
    return SliceTable(ids, ids.copy(), labels, study)


def _config(**changes):
    base = dict(backbone="resnet18", image_size=224, input_pool=4, init_weights="random", device="cpu",
                workers=0, progress=False, batch_size=4)
    base.update(changes)
    return TrainConfig(**base)


def test_stage_two_starts_from_the_stage_one_backbone(tmp_path):
    torch.manual_seed(3)
    detect = build_network("resnet18", 1, input_pool=4)
    trainer = StageTrainer("subtype", _config(), _table(), _table(), tmp_path / "c.pt", init_from=detect)
    network, origin = trainer._network()
    assert origin == "the trained detect stage"
    assert torch.equal(network.layer4[1].conv2.weight, detect.layer4[1].conv2.weight)
    assert torch.equal(network.conv1[1].weight, detect.conv1[1].weight)
    assert network.fc.out_features == 5
    plain, origin = StageTrainer("subtype", _config(), _table(), _table(), tmp_path / "c.pt")._network()
    assert origin == "random" and not torch.equal(plain.layer4[1].conv2.weight, detect.layer4[1].conv2.weight)


def test_stage_two_sees_positive_slices_only():
    train, validation = stage_tables("subtype", _table(), _table(2))
    assert train.labels[:, 0].all() and validation.labels[:, 0].all()
    assert len(train) == 10


def test_a_stage_without_slices_is_refused(tmp_path):
    table = _table()
    negatives = table.subset(table.labels[:, 0] == 0)
    with pytest.raises(UsageError, match="stage 'subtype' has 0 training"):
        StageTrainer("subtype", _config(), negatives, table, Path(tmp_path / "c.pt"))


def test_validation_cap_keeps_whole_studies():
    capped = limit_validation(_table(10, 5), 12, seed=0)
    assert 12 <= len(capped) <= 15 and len(capped) % 5 == 0
