"""The model directory: ``model.json`` plus one safetensors weights file per stage, checked on load.

A model directory is the unit a hospital installs. ``model.json`` carries everything needed to use
the weights correctly (backbone, input size, windows, class names, thresholds) and the sha256 of each
weights file. Loading never executes code from the directory: the weights are safetensors and the
metadata is JSON, and every field is validated before it is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from triage import __version__
from triage.domain import ANY, CLASSES, SUBTYPES
from triage.errors import ModelError
from triage.model.network import INPUT_POOLS, build_network, check_backbone

LOGGER = logging.getLogger(__name__)

FORMAT = "triage-model"
FORMAT_VERSION = 1
METADATA_FILE = "model.json"

#: The two stages, their outputs and the file each one's weights are written to.
STAGE_OUTPUTS: Mapping[str, tuple[str, ...]] = {"detect": (ANY,), "subtype": SUBTYPES}
STAGE_FILES: Mapping[str, str] = {"detect": "detect.safetensors", "subtype": "subtype.safetensors"}

#: Window (level, width) in HU per channel, as DESIGN.md section 6 fixes them.
DEFAULT_WINDOWS: Mapping[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (50.0, 130.0),
    "bone": (600.0, 2800.0),
}
WINDOWINGS = ("sigmoid", "linear")
_SAFE_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class StageFile:
    """One stage's weights file, named relative to the model directory, and its sha256."""

    file: str
    sha256: str


@dataclass(frozen=True)
class ModelMetadata:
    """The content of ``model.json``.

    Attributes
    ----------
    name
        Human name of the model (e.g. ``ich-resnet50-rsna``).
    backbone
        torchvision backbone of both stages.
    image_size
        Side of the square input (448, or 224 after max pooling; smaller sizes are allowed for tests).
    windowing
        ``sigmoid`` or ``linear``.
    input_pool
        Extra average-pooling inside the network before its first convolution (1: none).
    windows
        Channel name -> (level, width) in HU, in channel order.
    class_names
        The six outputs in order (``any`` first).
    thresholds
        Default per-class operating thresholds (admins may change them at run time).
    detection_threshold
        Stage 2 runs on slices with P(any) at or above this value.
    initialisation
        What training started from (``random``, ``imagenet:...``, ``file:...``).
    training
        Summary of the training data and recipe.
    metrics
        Evaluation figures (validation split, and later ``triage evaluate``).
    created
        ISO 8601 UTC creation time.
    stages
        Stage name -> weights file and its sha256.
    """

    name: str
    backbone: str
    image_size: int
    stages: Mapping[str, StageFile]
    windowing: str = "sigmoid"
    input_pool: int = 1
    windows: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_WINDOWS))
    class_names: tuple[str, ...] = CLASSES
    thresholds: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0.5))
    detection_threshold: float = 0.5
    initialisation: str = "random"
    training: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    created: str = ""
    triage_version: str = __version__
    format_version: int = FORMAT_VERSION

    @property
    def version(self) -> str:
        """Stable identifier: the name and a short sha256 over both weights files."""
        digest = hashlib.sha256("".join(self.stages[s].sha256 for s in STAGE_FILES).encode()).hexdigest()
        return f"{self.name}-{digest[:12]}"

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``model.json``."""
        data = asdict(self)
        data["windows"] = {k: list(v) for k, v in self.windows.items()}
        data["class_names"] = list(self.class_names)
        return {"format": FORMAT, **data}


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model_directory(
    out: Path,
    networks: Mapping[str, nn.Module],
    *,
    name: str,
    backbone: str,
    image_size: int,
    **metadata: Any,
) -> ModelMetadata:
    """Write both stages' weights and ``model.json`` into ``out`` (created if needed).

    Parameters
    ----------
    out
        The model directory.
    networks
        ``{"detect": stage-1 network, "subtype": stage-2 network}``.
    name, backbone, image_size
        See :class:`ModelMetadata`.
    **metadata
        Any other :class:`ModelMetadata` field (thresholds, windows, training, metrics, ...).

    Returns
    -------
    ModelMetadata
        What was written (read it back with :func:`load_model_directory`).
    """
    missing = sorted(set(STAGE_FILES) - set(networks))
    if missing:
        raise ModelError(f"cannot save a model without stage(s) {missing}")
    out.mkdir(parents=True, exist_ok=True)
    stages = {}
    for stage, filename in STAGE_FILES.items():
        state = {k: v.detach().to("cpu").contiguous() for k, v in networks[stage].state_dict().items()}
        save_file(state, str(out / filename), metadata={"stage": stage})  # one key: the header stays byte-stable
        os.chmod(out / filename, 0o644)
        stages[stage] = StageFile(filename, sha256_file(out / filename))
    meta = ModelMetadata(
        name=name, backbone=backbone, image_size=image_size, stages=stages, created=_now(), **metadata
    )
    _validate(meta.to_json(), out)
    _write_atomically(out / METADATA_FILE, json.dumps(meta.to_json(), indent=2, sort_keys=False) + "\n")
    LOGGER.info("wrote model directory %s (%s)", out, meta.version)
    return meta


def update_metadata(model_dir: Path, **changes: Any) -> ModelMetadata:
    """Rewrite ``model.json`` with some fields changed (e.g. calibrated thresholds, metrics)."""
    meta = read_metadata(model_dir)
    meta = replace(meta, **changes)
    _validate(meta.to_json(), model_dir)
    try:
        _write_atomically(model_dir / METADATA_FILE, json.dumps(meta.to_json(), indent=2) + "\n")
    except OSError as exc:
        raise ModelError(f"cannot rewrite {str(model_dir / METADATA_FILE)!r}: {exc}") from exc
    return meta


def read_metadata(model_dir: Path) -> ModelMetadata:
    """Read and validate ``model.json`` (without touching the weights)."""
    path = Path(model_dir) / METADATA_FILE
    if not Path(model_dir).is_dir():
        raise ModelError(f"model directory {str(model_dir)!r} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"model directory {str(model_dir)!r} has no {METADATA_FILE}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {str(path)!r}: {exc}") from exc
    return _validate(data, Path(model_dir))


def load_model_directory(model_dir: Path) -> tuple[ModelMetadata, dict[str, nn.Module]]:
    """Read a model directory, check every checksum, and build both stages' networks.

    Returns
    -------
    tuple
        The metadata and ``{"detect": network, "subtype": network}`` in eval mode on the CPU.

    Raises
    ------
    ModelError
        On a missing or malformed ``model.json``, an unknown format version or backbone, a missing
        stage or weights file, a checksum mismatch, or weights that do not fit the backbone.
    """
    model_dir = Path(model_dir)
    meta = read_metadata(model_dir)
    networks = {}
    for stage, outputs in STAGE_OUTPUTS.items():
        state = _read_weights(model_dir, stage, meta.stages[stage])
        network = build_network(meta.backbone, len(outputs), input_pool=meta.input_pool)
        try:
            network.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0:3]
            raise ModelError(
                f"weights {meta.stages[stage].file!r} do not fit backbone {meta.backbone!r} "
                f"(input_pool {meta.input_pool}) with {len(outputs)} output(s): {' '.join(first)[:400]}"
            ) from exc
        networks[stage] = network.eval()
    return meta, networks


def _read_weights(model_dir: Path, stage: str, entry: StageFile) -> dict[str, torch.Tensor]:
    path = model_dir / entry.file
    if not path.is_file():
        raise ModelError(f"stage {stage!r}: weights file {str(path)!r} is missing")
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise ModelError(
            f"stage {stage!r}: checksum mismatch for {entry.file!r}: sha256 is {actual}, model.json says {entry.sha256}"
        )
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"stage {stage!r}: cannot read {str(path)!r} as safetensors: {exc}") from exc


def _require(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in data:
        raise ModelError(f"{METADATA_FILE}: required field {key!r} is missing")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ModelError(f"{METADATA_FILE}: field {key!r} has value {value!r}, expected {kind}")
    return value


def _validate(data: Any, model_dir: Path) -> ModelMetadata:
    """Turn the JSON object into :class:`ModelMetadata`, checking every field."""
    if not isinstance(data, dict):
        raise ModelError(f"{METADATA_FILE} in {str(model_dir)!r} holds a {type(data).__name__}, expected an object")
    if data.get("format") != FORMAT:
        raise ModelError(f"{METADATA_FILE}: format is {data.get('format')!r}, expected {FORMAT!r}")
    version = _require(data, "format_version", int)
    if version != FORMAT_VERSION:
        raise ModelError(
            f"{METADATA_FILE}: unknown format version {version!r}; this triage reads version {FORMAT_VERSION}"
        )
    backbone = check_backbone(_require(data, "backbone", str))
    image_size = _require(data, "image_size", int)
    if not 32 <= image_size <= 1024:
        raise ModelError(f"{METADATA_FILE}: image_size {image_size!r} is outside 32..1024")
    windowing = _require(data, "windowing", str)
    if windowing not in WINDOWINGS:
        raise ModelError(f"{METADATA_FILE}: windowing {windowing!r} is not one of {WINDOWINGS}")
    class_names = tuple(_require(data, "class_names", list))
    if class_names != CLASSES:
        raise ModelError(f"{METADATA_FILE}: class_names {list(class_names)} differ from {list(CLASSES)}")
    return ModelMetadata(
        name=_require(data, "name", str),
        backbone=backbone,
        image_size=image_size,
        stages=_validate_stages(_require(data, "stages", dict)),
        windowing=windowing,
        input_pool=_input_pool(data.get("input_pool", 1)),
        windows=_validate_windows(_require(data, "windows", dict)),
        class_names=class_names,
        thresholds=_validate_thresholds(_require(data, "thresholds", dict)),
        detection_threshold=_probability("detection_threshold", _require(data, "detection_threshold", (int, float))),
        initialisation=str(data.get("initialisation", "unknown")),
        training=dict(data.get("training") or {}),
        metrics=dict(data.get("metrics") or {}),
        created=str(data.get("created", "")),
        triage_version=str(data.get("triage_version", "")),
        format_version=version,
    )


def _input_pool(value: Any) -> int:
    if isinstance(value, bool) or value not in INPUT_POOLS:
        raise ModelError(f"{METADATA_FILE}: input_pool is {value!r}, expected one of {INPUT_POOLS}")
    return int(value)


def _probability(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise ModelError(f"{METADATA_FILE}: {key} is {value!r}, expected a number in [0, 1]")
    return float(value)


def _validate_thresholds(raw: Mapping[str, Any]) -> dict[str, float]:
    missing = [name for name in CLASSES if name not in raw]
    if missing:
        raise ModelError(f"{METADATA_FILE}: thresholds lack class(es) {missing}")
    return {name: _probability(f"thresholds.{name}", raw[name]) for name in CLASSES}


def _validate_windows(raw: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    if len(raw) != 3:
        raise ModelError(f"{METADATA_FILE}: windows {raw!r} must name exactly three channels")
    windows = {}
    for name, pair in raw.items():
        ok = isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(v, int | float) for v in pair)
        if not ok or pair[1] <= 0:
            raise ModelError(f"{METADATA_FILE}: window {name!r} is {pair!r}, expected [level, width>0]")
        windows[str(name)] = (float(pair[0]), float(pair[1]))
    return windows


def _validate_stages(raw: Mapping[str, Any]) -> dict[str, StageFile]:
    missing = [stage for stage in STAGE_FILES if stage not in raw]
    if missing:
        raise ModelError(f"{METADATA_FILE}: stage(s) {missing} missing; a model needs {list(STAGE_FILES)}")
    stages = {}
    for stage in STAGE_FILES:
        entry = raw[stage]
        if not isinstance(entry, dict):
            raise ModelError(f"{METADATA_FILE}: stage {stage!r} is {entry!r}, expected an object")
        filename, digest = entry.get("file"), entry.get("sha256")
        if not isinstance(filename, str) or not _SAFE_FILE.match(filename) or ".." in filename:
            raise ModelError(f"{METADATA_FILE}: stage {stage!r} names file {filename!r}, expected a plain file name")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise ModelError(f"{METADATA_FILE}: stage {stage!r} has sha256 {digest!r}, expected 64 hex digits")
        stages[stage] = StageFile(filename, digest)
    return stages
