"""The networks of both stages: a torchvision ResNet with global average pooling and a linear head."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torchvision
from torch import nn

from triage.errors import ModelError

LOGGER = logging.getLogger(__name__)

#: Backbones a model directory may name, and their torchvision constructors.
BACKBONES: Mapping[str, Callable[..., torchvision.models.ResNet]] = {
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
    "resnet101": torchvision.models.resnet101,
}

#: torchvision's ImageNet weights enum entry per backbone (used only for initialisation before training).
IMAGENET_WEIGHTS: Mapping[str, str] = {
    "resnet18": "ResNet18_Weights.IMAGENET1K_V1",
    "resnet34": "ResNet34_Weights.IMAGENET1K_V1",
    "resnet50": "ResNet50_Weights.IMAGENET1K_V2",
    "resnet101": "ResNet101_Weights.IMAGENET1K_V2",
}


def check_backbone(backbone: str) -> str:
    """Return ``backbone`` when it is a known name, else raise :class:`ModelError` naming it."""
    if backbone not in BACKBONES:
        raise ModelError(f"unknown backbone {backbone!r}: expected one of {sorted(BACKBONES)}")
    return backbone


#: Allowed extra average-pooling factors in front of the first convolution.
INPUT_POOLS = (1, 2, 4)


def build_network(backbone: str, outputs: int, *, input_pool: int = 1) -> nn.Module:
    """A ResNet (random weights) whose last layer gives ``outputs`` logits.

    torchvision's ResNet already ends in global average pooling and a fully connected layer; the
    fully connected layer is replaced by one with ``outputs`` logits.

    Parameters
    ----------
    backbone
        One of :data:`BACKBONES`.
    outputs
        Number of logits: 1 for stage 1 (any ICH), 5 for stage 2 (subtypes).
    input_pool
        1 (the paper's network), or 2/4: average-pool the input by that factor before the first
        convolution, which makes small CPU-trained models (the demo) 4 or 16 times cheaper.
        Averaging (not the max of the paper's 448 -> 224 step) also averages the CT noise away.
        ``conv1`` then becomes ``Sequential(AvgPool2d, Conv2d)``.
    """
    if input_pool not in INPUT_POOLS:
        raise ModelError(f"input_pool {input_pool!r} is not one of {INPUT_POOLS}")
    network = BACKBONES[check_backbone(backbone)](weights=None)
    network.fc = nn.Linear(network.fc.in_features, outputs)
    if input_pool > 1:
        network.conv1 = nn.Sequential(nn.AvgPool2d(input_pool), network.conv1)
    return network


def initialise(network: nn.Module, backbone: str, source: str | Path | None) -> str:
    """Load pre-trained backbone weights into ``network`` (the head stays random).

    Parameters
    ----------
    network
        A network from :func:`build_network`.
    backbone
        Its backbone name.
    source
        ``"imagenet"`` (torchvision's weights API: its cache, or a download), a path to a local
        state dict (``.pth`` loaded with ``weights_only=True``, or ``.safetensors``), or
        ``None``/``"random"``.

    Returns
    -------
    str
        What the network was initialised from, for the model metadata: ``"random"``,
        ``"imagenet:<weights>"``, ``"file:<name>:sha256:<digest>"``, or ``"random (imagenet unavailable: ...)"``.
    """
    if source in (None, "", "random"):
        return "random"
    if source == "imagenet":
        return _initialise_imagenet(network, backbone)
    return _initialise_file(network, Path(source))


def _initialise_imagenet(network: nn.Module, backbone: str) -> str:
    name = IMAGENET_WEIGHTS[backbone]
    try:
        state = torchvision.models.get_weight(name).get_state_dict(progress=False)
    except Exception as exc:  # noqa: BLE001 - offline or blocked: fall back, and say so in the metadata
        LOGGER.warning("ImageNet weights %s are not available (%s); starting from random weights", name, exc)
        return f"random (imagenet unavailable: {type(exc).__name__})"
    load_backbone(network, state, name)
    return f"imagenet:{name}"


def _initialise_file(network: nn.Module, path: Path) -> str:
    if not path.is_file():
        raise ModelError(f"initial weights file {str(path)!r} does not exist")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file becomes one clear error
        raise ModelError(f"cannot read initial weights {str(path)!r}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"initial weights {str(path)!r} hold a {type(state).__name__}, expected a state dict")
    load_backbone(network, state, str(path))
    return f"file:{path.name}:sha256:{digest}"


def load_backbone(network: nn.Module, state: Mapping[str, torch.Tensor], origin: str) -> None:
    """Load every tensor but the classification head (``fc``) from ``state``.

    Raises
    ------
    ModelError
        When the backbone tensors do not fit ``network`` (the message names ``origin``).
    """
    backbone_state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if isinstance(network.conv1, nn.Sequential) and "conv1.weight" in backbone_state:
        backbone_state["conv1.1.weight"] = backbone_state.pop("conv1.weight")
    try:
        result = network.load_state_dict(backbone_state, strict=False)
    except RuntimeError as exc:
        raise ModelError(f"initial weights from {origin!r} do not fit the network: {exc}") from exc
    missing = [k for k in result.missing_keys if not k.startswith("fc.")]
    if missing or result.unexpected_keys:
        raise ModelError(
            f"initial weights from {origin!r} do not fit the network: "
            f"missing {missing[:5]}, unexpected {list(result.unexpected_keys)[:5]}"
        )
