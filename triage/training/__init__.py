"""RSNA Kaggle reader, balanced under-sampler, training loop, metrics and evaluation report.

``triage train`` and ``triage evaluate`` call :mod:`triage.training.cli`; ``triage demo`` calls
:func:`train_demo_model` when it has no model yet.
"""

from triage.training.demo import train_demo_model
from triage.training.evaluate import Evaluation, evaluate_model, evaluate_table
from triage.training.kaggle import SliceTable, TrainingDataError, read_kaggle, read_labels, split_by_study
from triage.training.loop import StageResult, StageTrainer, TrainConfig
from triage.training.sampler import DETECT_SHARES, SUBTYPE_SHARES, BalancedBatchSampler, batch_composition
from triage.training.train import TrainRequest, train_model

__all__ = [
    "DETECT_SHARES",
    "SUBTYPE_SHARES",
    "BalancedBatchSampler",
    "Evaluation",
    "SliceTable",
    "StageResult",
    "StageTrainer",
    "TrainConfig",
    "TrainRequest",
    "TrainingDataError",
    "batch_composition",
    "evaluate_model",
    "evaluate_table",
    "read_kaggle",
    "read_labels",
    "split_by_study",
    "train_demo_model",
    "train_model",
]
