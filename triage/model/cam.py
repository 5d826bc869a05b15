"""Class activation maps of the stage-1 network, for heat-map overlays on key images."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import nn


def _features(network: Any, x: torch.Tensor) -> torch.Tensor:
    """The last convolutional feature maps (N, C, h, w) of a torchvision ResNet."""
    x = network.maxpool(network.relu(network.bn1(network.conv1(x))))
    for layer in (network.layer1, network.layer2, network.layer3, network.layer4):
        x = layer(x)
    return x


def class_activation_map(network: nn.Module, image: np.ndarray, device: torch.device) -> np.ndarray:
    """CAM (Zhou et al. 2016) of the single logit of ``network`` for one image.

    Because the network ends in global average pooling and one linear layer, the logit is the
    spatial mean of ``sum_c w_c * feature_c``; that weighted sum, kept positive, is the map.

    Parameters
    ----------
    network
        Stage-1 ResNet with one output.
    image
        Float32 array (3, S, S).
    device
        Where ``network`` lives.

    Returns
    -------
    numpy.ndarray
        (S, S) float32 in [0, 1]; all zeros when nothing speaks for a bleed.
    """
    size = image.shape[-2:]
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].to(device)
        features = _features(network, x.contiguous(memory_format=torch.channels_last)).float()
        head: Any = network.fc
        weights = head.weight[0].float()
        cam = F.relu(torch.einsum("nchw,c->nhw", features, weights))[:, None]
        cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[0, 0]
        peak = float(cam.max())
        cam = cam / peak if peak > 0 else torch.zeros_like(cam)
        return cam.clamp_(0.0, 1.0).cpu().numpy().astype(np.float32)
