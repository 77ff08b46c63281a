"""Perturbation families: forward passes only, no gradients. Score-CAM runs one masked forward
per channel of a layer, RISE one per random mask; :func:`perturbed_logits` runs those passes on
the images' device in chunks of ``batch_size`` inputs, so memory stays bounded whatever their
number (the path families share :func:`passes`). Random draws come from a CPU
``torch.Generator`` seeded by ``seed`` and are the same for every image."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from xiqa.saliency.maps import DEFAULT_LAYER, upsample
from xiqa.saliency.probe import forward
from xiqa.saliency.registry import Count, Layer, Number, Seed, register


def passes(
    n_images: int, per_image: int, batch_size: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """All (image, pass) index pairs, image-major, in chunks of at most ``batch_size``."""
    for i in torch.arange(n_images * per_image, device=device).split(batch_size):
        yield i // per_image, i % per_image


def perturbed_logits(
    model: nn.Module,
    n_images: int,
    per_image: int,
    make_inputs: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    """(N, per_image, classes): the logits of ``make_inputs(image, pass)`` for every pair,
    from gradient-free forward passes of at most ``batch_size`` inputs."""
    chunks = passes(n_images, per_image, batch_size, device)
    logits = torch.cat([forward(model, make_inputs(image, k))[0] for image, k in chunks])
    return logits.view(n_images, per_image, -1)


def of_targets(values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, K, classes) → (N, K): each image's target class."""
    return values.gather(2, targets.view(-1, 1, 1).expand(-1, values.shape[1], 1)).squeeze(2)


def scorecam_masks(activations: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) activation channels → (B, H, W) masks in [0, 1], as pytorch-grad-cam's ScoreCAM
    makes them: bilinear upsampling with align_corners=True, then (m − min) / (max − min + 1e-8)
    per mask (a constant channel gives the zero mask)."""
    up = F.interpolate(activations.unsqueeze(1), size=size, mode="bilinear", align_corners=True)
    flat = up.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low + 1e-8)).view(-1, *size)


@register("scorecam", label="Score-CAM", kind="cam")
def scorecam(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    layer: Layer = DEFAULT_LAYER,
    batch_size: Count = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Score-CAM (Wang et al., CVPRW 2020): each channel A_k of ``layer`` becomes a mask M_k
    (:func:`scorecam_masks`), the image is multiplied by it and run forward; the channel's
    weight is the softmax over channels of those target logits (the paper's increase of
    confidence f(X ⊙ M_k) − f(X_b): the softmax ignores the common baseline), and the map is
    ReLU(Σ_k w_k A_k), upsampled bilinearly. One masked forward per image and channel (512 at
    a ResNet's layer4), ``batch_size`` at a time."""
    logits, (a,) = forward(model, images, [layer])
    n, c = a.shape[:2]
    size = images.shape[-2:]

    def masked(image: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return images[image] * scorecam_masks(a[image, k], size).unsqueeze(1)

    scores = of_targets(perturbed_logits(model, n, c, masked, batch_size, images.device), targets)
    cam = (scores.softmax(1)[:, :, None, None] * a).sum(1).clamp(min=0)
    return upsample(cam, size), logits


class RiseMasks:
    """RISE's random masks (Petsiuk et al., BMVC 2018): a ``grid`` × ``grid`` binary grid whose
    cells are kept with probability ``p``, upsampled bilinearly (align_corners=False) to
    (grid + 1) · ⌈H / grid⌉ × (grid + 1) · ⌈W / grid⌉ and cropped to H × W at a random shift
    of less than one cell. Grids and shifts are drawn up front on the CPU from a generator
    seeded with ``seed`` (the same draws on any device); masks are made on demand, a few at a
    time, on ``device``."""

    def __init__(
        self, n_masks: int, grid: int, p: float, seed: int, size: tuple[int, int], device, dtype
    ):
        generator = torch.Generator().manual_seed(seed)
        self.size = size
        self.cell = [-(-extent // grid) for extent in size]  # ⌈H / grid⌉, ⌈W / grid⌉
        self.up = [(grid + 1) * c for c in self.cell]
        self.grids = (torch.rand(n_masks, grid, grid, generator=generator) < p).to(device, dtype)
        self.shifts = [
            torch.randint(0, c, (n_masks,), generator=generator).to(device) for c in self.cell
        ]

    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        """The masks numbered ``index``, (B, H, W)."""
        up = F.interpolate(
            self.grids[index].unsqueeze(1), size=self.up, mode="bilinear", align_corners=False
        ).squeeze(1)
        h, w = self.size
        rows = self.shifts[0][index, None] + torch.arange(h, device=up.device)  # (B, H)
        cols = self.shifts[1][index, None] + torch.arange(w, device=up.device)  # (B, W)
        batch = torch.arange(len(index), device=up.device)[:, None, None]
        return up[batch, rows[:, :, None], cols[:, None, :]]


@register("rise", label="RISE", kind="perturbation")
def rise(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    n_masks: Count = 4000,
    grid: Count = 7,
    p: Annotated[float, Number(0, 1, open_least=True, noun="a probability")] = 0.5,
    seed: Seed = 0,
    batch_size: Count = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """RISE (Petsiuk et al., BMVC 2018): the map is Σ_i P_i M_i / (n_masks · p), where M_i are
    random masks (:class:`RiseMasks`, shared by all images) and P_i the softmax probability
    of the target class for the image multiplied by M_i. One masked forward per image and
    mask, ``batch_size`` at a time. Defaults: 4000 masks, a 7 × 7 grid, p = 0.5."""
    logits, _ = forward(model, images)
    n, size, device = len(images), images.shape[-2:], images.device
    masks = RiseMasks(n_masks, grid, p, seed, size, device, images.dtype)

    def masked(image: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return images[image] * masks(k).unsqueeze(1)

    scores = perturbed_logits(model, n, n_masks, masked, batch_size, device).softmax(2)
    probabilities = of_targets(scores, targets)  # (N, n_masks)
    maps = sum(
        probabilities[:, k] @ masks(k).flatten(1)
        for k in torch.arange(n_masks, device=device).split(batch_size)
    )
    return maps.view(n, *size) / (n_masks * p), logits
