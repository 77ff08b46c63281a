"""Helpers every family shares: upsampling a layer's map, min–max scaling, reducing an input
gradient's three channels to one, and the authors' post-processing steps (docs/protocol.md §6)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# The layer the paper's single-layer maps are taken at: the alias of the last block (a ResNet's
# last residual block, layer4.2 in the paper's ResNet-34), resolved per architecture by
# xiqa.model.network.layer_aliases.
DEFAULT_LAYER = "last"


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


def percentile_clip(maps: torch.Tensor, percentile: float = 99.0) -> torch.Tensor:
    """The authors' ``convert_to_grayscale`` scaling (docs/protocol.md §6.5): per map,
    (m − min) / (p − min) clipped to [0, 1], with p the map's ``percentile`` (linear
    interpolation, as ``np.percentile``). Every pixel above p ties at 1: n − ⌊0.99 (n − 1)⌋ − 1
    of n distinct values at the 99th. Where p equals the minimum (the authors' 0/0), the pixels
    above it are 1 and the rest 0."""
    flat = maps.flatten(1)
    low = flat.min(1, keepdim=True).values
    high = torch.quantile(flat.double(), percentile / 100, dim=1, keepdim=True).to(flat.dtype)
    span = high - low
    scaled = torch.where(
        span > 0, (flat - low) / torch.where(span > 0, span, 1), (flat > low).to(flat.dtype)
    )
    return scaled.clamp(0, 1).view_as(maps)


def uint8_lanczos_upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The authors' Grad-CAM upsampling (docs/protocol.md §6.4): per map, min–max scaling,
    ``uint8(m · 255)`` (truncation), Pillow's Lanczos resize to ``size`` and ``/ 255``, so the
    map takes the 256 values k/255 and plateaus at its maximum. Pillow is the reference here:
    its fixed-point Lanczos filter is what the authors ran, and no torch filter matches it."""
    from PIL import Image

    # float32 throughout, as the authors' numpy arrays; the uint8 conversion truncates.
    levels = (minmax(maps).detach().cpu().float() * 255).to(torch.uint8).numpy()
    height, width = size
    resized = [
        np.asarray(Image.fromarray(level).resize((width, height), Image.LANCZOS))
        for level in levels
    ]
    return torch.from_numpy(np.stack(resized).astype(np.float32) / 255).to(maps.device)
