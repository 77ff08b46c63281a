"""Helpers every family shares: upsampling a layer's map, min–max scaling, and reducing an input
gradient's three channels to one."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The last residual block of a ResNet: the layer the paper's single-layer maps are taken at.
DEFAULT_LAYER = "layer4.2"


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) → (N, H, W), bilinear with align_corners=False."""
    return F.interpolate(
        maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False
    ).squeeze(1)


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Per-map min–max scaling to [0, 1]; a constant map (no spatial information) becomes ones,
    the neutral element of the geometric mean."""
    flat = maps.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    span = high - low
    scaled = torch.where(span > 0, (flat - low) / torch.where(span > 0, span, 1), 1.0)
    return scaled.view_as(maps)


def channel_abs_sum(gradients: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) → (N, H, W): the sum of absolute values over the channels."""
    return gradients.abs().sum(1)
