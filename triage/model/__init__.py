"""The two-stage ICH network: model directory load/save, batched inference, activation maps.

Stage 1 detects any intracranial hemorrhage per slice; stage 2 names the subtypes on the slices
stage 1 calls positive. ``model`` knows no database and no DICOM networking.
"""

from triage.model.classifier import BACKENDS, Classifier, compose_probabilities
from triage.model.directory import (
    DEFAULT_WINDOWS,
    FORMAT_VERSION,
    METADATA_FILE,
    STAGE_FILES,
    STAGE_OUTPUTS,
    ModelMetadata,
    StageFile,
    load_model_directory,
    read_metadata,
    save_model_directory,
    update_metadata,
)
from triage.model.network import BACKBONES, build_network, initialise
from triage.model.untrained import save_random_model

__all__ = [
    "BACKBONES",
    "BACKENDS",
    "DEFAULT_WINDOWS",
    "FORMAT_VERSION",
    "METADATA_FILE",
    "STAGE_FILES",
    "STAGE_OUTPUTS",
    "Classifier",
    "ModelMetadata",
    "StageFile",
    "build_network",
    "compose_probabilities",
    "initialise",
    "load_model_directory",
    "read_metadata",
    "save_model_directory",
    "save_random_model",
    "update_metadata",
]
