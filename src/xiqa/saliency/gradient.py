"""Gradient methods from one probe: maps of d(target logit)/d(input), reduced to one channel by
the sum of absolute values over the input's three channels.

Each family's defaults are the correct method; its deviations reproduce, one step at a time,
the authors' MIDL 2021 code (docs/protocol.md §6)."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from xiqa.saliency.cam import (
    GRADCAM_DEVIATIONS,
    Hook,
    Offset,
    Upsampling,
    class_activation_map,
    gradcam_layer_map,
)
from xiqa.saliency.maps import DEFAULT_LAYER, channel_abs_sum, percentile_clip
from xiqa.saliency.probe import probe
from xiqa.saliency.registry import Choice, Clip, Deviation, Layer, Target, register

# Which ReLUs Guided BP guides: every one (correct) or only the stem's (the authors').
Guide = Annotated[str, Choice(("all", "stem"))]

LOGIT_SUM = Deviation({"target": "logit-sum"}, "§6.1: guided_backprop.py:110-111, one_hot[None]")
STEM_ONLY = Deviation({"guide": "stem"}, "§6.2: guided_backprop.py:92-99, only model.relu")
P99_CLIP = Deviation({"clip": "p99"}, "§6.5: misc_functions.py:29-33, convert_to_grayscale")


def clipped(maps: torch.Tensor, clip: str) -> torch.Tensor:
    return percentile_clip(maps, 99.0) if clip == "p99" else maps


def guided_gradient(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, target: str, guide: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The guided input gradient (N, 3, H, W), signed, and the logits."""
    result = probe(model, images, targets, input_gradient=True, guided=guide, target=target)
    return result.input_gradient, result.logits


@register(
    "guided-backprop",
    label="Guided BP",
    kind="gradient",
    deviations={
        "target": LOGIT_SUM,
        "guide": STEM_ONLY,
        "reduce": Deviation(
            {"reduce": "positive-sum"}, "§6.3: run_guided_backprop.py:75, positive part"
        ),
        "clip": P99_CLIP,
    },
)
def guided_backprop(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    target: Target = "given",
    guide: Guide = "all",
    reduce: Annotated[str, Choice(("abs-sum", "positive-sum"))] = "abs-sum",
    clip: Clip = "none",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Guided Backpropagation (Springenberg et al., ICLR 2015 workshop): every ReLU passes
    positive gradients only; the map is Σ_c |∂(target logit)/∂x_c|. The authors' code:
    ``guide="stem"``, ``reduce="positive-sum"`` (Σ_c max(g_c, 0); their division by the global
    maximum, a positive scale, is left out), ``clip="p99"``, ``target="logit-sum"``."""
    gradient, logits = guided_gradient(model, images, targets, target, guide)
    positive = reduce == "positive-sum"
    maps = gradient.clamp(min=0).sum(1) if positive else channel_abs_sum(gradient)
    return clipped(maps, clip), logits


@register(
    "input-x-gradient",
    label="Input×Grad",
    kind="gradient",
    deviations={
        "target": LOGIT_SUM,
        "channels": Deviation(
            {"gradient_channels": "first"}, "§6.3: run_grad_times_image.py:75, grads[0]"
        ),
        "clip": P99_CLIP,
    },
)
def input_x_gradient(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    target: Target = "given",
    gradient_channels: Annotated[str, Choice(("all", "first"))] = "all",
    clip: Clip = "none",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input × Gradient (Shrikumar et al., 2016), all three channels: Σ_c |x_c ∂(target
    logit)/∂x_c|. The authors' code: ``gradient_channels="first"`` (the R channel's gradient
    times each input channel: |g_R| Σ_c |x_c|), ``clip="p99"``, ``target="logit-sum"``."""
    result = probe(model, images, targets, input_gradient=True, target=target)
    gradient = result.input_gradient
    if gradient_channels == "first":
        gradient = gradient[:, :1]  # broadcast against the three input channels
    return clipped(channel_abs_sum(images * gradient), clip), result.logits


@register(
    "guided-gradcam",
    label="Guided Grad-CAM",
    kind="gradient",
    deviations={
        # Their Guided BP part explained logit0 + logit1, their Grad-CAM part its own argmax.
        "target": Deviation(
            {"target": "logit-sum", "cam_target": "predicted"},
            "§6.1: run_guided_gradcam.py:88-90",
        ),
        "guide": STEM_ONLY,
        **{
            name: Deviation({f"cam_{k}": v for k, v in d.overrides.items()}, d.step)
            for name, d in GRADCAM_DEVIATIONS.items()
            if name != "target"
        },
        "clip": P99_CLIP,
    },
)
def guided_gradcam(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    layer: Layer = DEFAULT_LAYER,
    target: Target = "given",
    guide: Guide = "all",
    clip: Clip = "none",
    cam_target: Target = "given",
    cam_hook: Hook = "output",
    cam_offset: Offset = 0.0,
    cam_upsampling: Upsampling = "bilinear",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Guided Grad-CAM (Selvaraju et al., ICCV 2017): the reduced Guided BP map (``target``,
    ``guide``) times the upsampled Grad-CAM map at ``layer`` (``cam_*``: the Grad-CAM
    family's parameters), then ``clip``. The logits are the Guided BP pass's."""
    gradient, logits = guided_gradient(model, images, targets, target, guide)

    def layer_map(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return gradcam_layer_map(a, g, cam_offset)

    cam, _ = class_activation_map(
        model, images, targets, layer, layer_map, cam_target, cam_hook, cam_upsampling
    )
    return clipped(channel_abs_sum(gradient) * cam, clip), logits
