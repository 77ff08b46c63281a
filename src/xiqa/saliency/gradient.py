"""Gradient methods from one probe: maps of d(target logit)/d(input), reduced to one channel by
the sum of absolute values over the input's three channels."""

from __future__ import annotations

import torch
from torch import nn

from xiqa.saliency.cam import class_activation_map, gradcam_layer_map
from xiqa.saliency.maps import DEFAULT_LAYER, channel_abs_sum
from xiqa.saliency.probe import probe
from xiqa.saliency.registry import Layer, register


@register("guided-backprop", label="Guided BP", kind="gradient")
def guided_backprop(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Guided Backpropagation (Springenberg et al., ICLR 2015 workshop): every ReLU passes
    positive gradients only; the map is Σ_c |∂(target logit)/∂x_c|."""
    result = probe(model, images, targets, input_gradient=True, guided=True)
    return channel_abs_sum(result.input_gradient), result.logits


@register("input-x-gradient", label="Input×Grad", kind="gradient")
def input_x_gradient(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input × Gradient (Shrikumar et al., 2016), all three channels: Σ_c |x_c ∂(target
    logit)/∂x_c|."""
    result = probe(model, images, targets, input_gradient=True)
    return channel_abs_sum(images * result.input_gradient), result.logits


@register("guided-gradcam", label="Guided Grad-CAM", kind="gradient")
def guided_gradcam(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: Layer = DEFAULT_LAYER
) -> tuple[torch.Tensor, torch.Tensor]:
    """Guided Grad-CAM (Selvaraju et al., ICCV 2017): the reduced Guided BP map times the
    upsampled Grad-CAM map at ``layer``."""
    guided, logits = guided_backprop(model, images, targets)
    cam, _ = class_activation_map(model, images, targets, layer, gradcam_layer_map)
    return guided * cam, logits
