"""The paper's training augmentations, applied to whole batches as tensors on the device.

The authors used RandomHorizontalFlip, ColorJitter(0.4, 0.4, 0.4, 0.1) and RandomAffine(degrees
30, translate 0.1, scale 0.95–1.05, shear 0.1). On a grey radiograph replicated to three channels
saturation and hue jitter are the identity, so brightness and contrast are what remain. The
affine warp is one batched ``grid_sample``, each image with its own parameters, filling with
black as torchvision does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _uniform(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def sample_params(n: int, size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Per-image random parameters of the paper's augmentations for n images of size×size."""
    return {
        "flip": torch.rand(n, generator=generator) < 0.5,
        "brightness": _uniform(generator, n, 0.6, 1.4),
        "contrast": _uniform(generator, n, 0.6, 1.4),
        "angle": _uniform(generator, n, -30.0, 30.0),  # degrees
        # torchvision translates by whole pixels, up to 10% of the size.
        "shift_x": torch.round(_uniform(generator, n, -0.1, 0.1) * size),
        "shift_y": torch.round(_uniform(generator, n, -0.1, 0.1) * size),
        "scale": _uniform(generator, n, 0.95, 1.05),
        "shear": _uniform(generator, n, -0.1, 0.1),  # degrees, along x
    }


def apply_augmentation(images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Flip, then brightness and contrast, then the affine warp, of grey images (N, S, S)."""
    n, height, width = images.shape
    p = {k: v.to(images.device) for k, v in params.items()}
    x = torch.where(p["flip"].view(n, 1, 1), images.flip(-1), images)
    x = (x * p["brightness"].view(n, 1, 1)).clamp(0, 1)
    mean = x.mean(dim=(1, 2), keepdim=True)
    x = ((x - mean) * p["contrast"].view(n, 1, 1) + mean).clamp(0, 1)

    # Forward map in normalised coordinates: out = R(angle) · Shear · scale · in + shift;
    # grid_sample samples the input at the inverse map of each output pixel.
    angle, shear = torch.deg2rad(p["angle"]), torch.deg2rad(p["shear"])
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    forward = torch.stack(
        [torch.stack([cos, cos * tan - sin], 1), torch.stack([sin, sin * tan + cos], 1)], 1
    ) * p["scale"].view(n, 1, 1)
    inverse = torch.linalg.inv(forward.double())
    shift = torch.stack([p["shift_x"] * 2 / width, p["shift_y"] * 2 / height], 1)
    theta = torch.cat([inverse, -inverse @ shift.double().unsqueeze(2)], 2).to(x.dtype)
    grid = F.affine_grid(theta, [n, 1, height, width], align_corners=False)
    warped = F.grid_sample(
        x.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return warped.squeeze(1)


def augment_batch(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Augment grey images (N, S, S) in [0, 1] with parameters drawn from ``generator`` (CPU):
    a batch's augmentation depends only on the generator's state, whatever the device."""
    return apply_augmentation(images, sample_params(len(images), images.shape[-1], generator))
