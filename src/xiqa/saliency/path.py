"""Path and noise families: one forward and backward per step or sample, run in chunks of
``batch_size`` inputs by :func:`summed_input_gradients`. Integrated Gradients follows the path
from the zero baseline to the image; SmoothGrad averages over noisy copies of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import torch
from torch import nn

from xiqa.saliency.maps import channel_abs_sum
from xiqa.saliency.perturbation import passes
from xiqa.saliency.probe import forward, probe
from xiqa.saliency.registry import Count, Number, Seed, register


def summed_input_gradients(
    model: nn.Module,
    targets: torch.Tensor,
    per_image: int,
    make_inputs: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    reduce: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
) -> torch.Tensor:
    """Σ over each image's passes of ``reduce(d(target logit)/d(input))`` at the inputs
    ``make_inputs(image, pass)``; one probe per chunk of at most ``batch_size`` inputs."""
    total = None
    for image, k in passes(len(targets), per_image, batch_size, targets.device):
        gradient = probe(model, make_inputs(image, k), targets[image], input_gradient=True)
        part = reduce(gradient.input_gradient)
        if total is None:
            total = part.new_zeros((len(targets), *part.shape[1:]))
        total.index_add_(0, image, part)
    return total


@register("integrated-gradients", label="Integrated Gradients", kind="path")
def integrated_gradients(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    n_steps: Count = 50,
    batch_size: Count = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrated Gradients (Sundararajan et al., ICML 2017) from the zero baseline by the
    right Riemann sum of the paper (Captum's method="riemann_right"):
    IG = x ⊙ (1/m) Σ_{k=1..m} ∇f(k x / m), then the channels' absolute sum. One forward and
    backward per image and step, ``batch_size`` at a time."""
    logits, _ = forward(model, images)
    alphas = torch.arange(1, n_steps + 1, device=images.device, dtype=images.dtype) / n_steps

    def path_point(image: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return images[image] * alphas[k, None, None, None]

    total = summed_input_gradients(
        model, targets, n_steps, path_point, lambda gradient: gradient, batch_size
    )
    return channel_abs_sum(images * total / n_steps), logits


@register("smoothgrad", label="SmoothGrad", kind="path")
def smoothgrad(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    n_samples: Count = 50,
    stdev: Annotated[float, Number(0)] = 0.15,
    seed: Seed = 0,
    batch_size: Count = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SmoothGrad (Smilkov et al., 2017): the mean over ``n_samples`` noisy copies x + ε of the
    gradient map (the channels' absolute sum of ∇f(x + ε)), ε ~ N(0, σ²) with σ = ``stdev`` ×
    (max − min of the image), the paper's noise level. The standard normal draws are float32,
    drawn at once from a CPU generator seeded with ``seed``, the same for every image; they
    are scaled in float32 exactly as Captum's NoiseTunnel scales its draws. One forward and
    backward per image and sample, ``batch_size`` at a time."""
    logits, _ = forward(model, images)
    generator = torch.Generator().manual_seed(seed)
    normal = torch.randn(n_samples, *images.shape[1:], generator=generator).to(images.device)
    spread = images.flatten(1).amax(1) - images.flatten(1).amin(1)
    sigma = (stdev * spread).float()

    def noisy(image: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        noise = normal[k] * sigma[image, None, None, None]  # float32, as Captum's
        return images[image] + noise.to(images.dtype)

    total = summed_input_gradients(model, targets, n_samples, noisy, channel_abs_sum, batch_size)
    return total / n_samples, logits
