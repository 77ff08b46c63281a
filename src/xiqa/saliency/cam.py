"""The CAM family: one layer's channels A_k combined by weights from its gradients G, from one
probe. Each method is a layer map of (A, G); the families are registered from :data:`LAYER_MAPS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

import torch
from torch import nn

from xiqa.saliency.maps import DEFAULT_LAYER, uint8_lanczos_upsample, upsample
from xiqa.saliency.probe import probe
from xiqa.saliency.registry import (
    Choice,
    Deviation,
    FamilyFunction,
    Layer,
    Number,
    Target,
    register,
)

LayerMap = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (A, G) (N, C, h, w) -> (N, h, w)


def gradcam_layer_map(a: torch.Tensor, g: torch.Tensor, offset: float = 0.0) -> torch.Tensor:
    """Grad-CAM at one layer (Selvaraju et al., ICCV 2017): ReLU(offset + Σ_k α_k A_k) with α_k
    the spatial mean of G_k; the correct ``offset`` is 0 (the authors' code started the sum at
    ones, docs/protocol.md §6.4)."""
    weights = g.mean(dim=(2, 3), keepdim=True)
    return (offset + (weights * a).sum(1)).clamp(min=0)


def gradcam_plusplus_layer_map(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ at one layer (Chattopadhyay et al., WACV 2018, eq. 19, the exponential of the
    score): α = G² / (2 G² + (Σ_ab A_ab) G³) at each location; w_k = Σ_ij α ReLU(G);
    map ReLU(Σ_k w_k A_k). No ε is added to the denominator (an absolute ε would swamp the
    small gradients of a large input); where it is zero (G = 0, or G = −2/ΣA < 0, which
    ReLU(G) drops anyway) α is 0."""
    g2 = g.pow(2)
    denominator = 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g2 * g
    alpha = torch.where(denominator != 0, g2 / torch.where(denominator != 0, denominator, 1), 0)
    weights = (alpha * g.clamp(min=0)).sum(dim=(2, 3), keepdim=True)
    return (weights * a).sum(1).clamp(min=0)


def xgradcam_layer_map(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """XGrad-CAM at one layer (Fu et al., BMVC 2020): w_k = Σ_ij (A_k,ij / Σ_ab A_k,ab) G_k,ij,
    map ReLU(Σ_k w_k A_k); a channel whose activations sum to zero gets weight 0."""
    total = a.sum(dim=(2, 3), keepdim=True)
    weights = (a * g).sum(dim=(2, 3), keepdim=True) / torch.where(total != 0, total, 1)
    return (torch.where(total != 0, weights, 0) * a).sum(1).clamp(min=0)


def layercam_layer_map(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """LayerCAM at one layer (Jiang et al., IEEE TIP 2021): ReLU(Σ_k ReLU(G_k) ⊙ A_k)."""
    return (g.clamp(min=0) * a).sum(1).clamp(min=0)


def hirescam_layer_map(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """HiResCAM at one layer (Draelos & Carin, 2020): ReLU(Σ_k G_k ⊙ A_k), the element-wise
    product Grad-CAM averages away."""
    return (g * a).sum(1).clamp(min=0)


# Family name -> (table label, layer map); each is registered as a family of one ``layer``.
LAYER_MAPS: dict[str, tuple[str, LayerMap]] = {
    "gradcam": ("Grad-CAM", gradcam_layer_map),
    "gradcam-plusplus": ("Grad-CAM++", gradcam_plusplus_layer_map),
    "xgradcam": ("XGrad-CAM", xgradcam_layer_map),
    "layercam": ("LayerCAM", layercam_layer_map),
    "hirescam": ("HiResCAM", hirescam_layer_map),
}


# Where Grad-CAM's (A, G) are taken: the layer's output (correct), or the authors' last block
# run without its residual add and final ReLU, A its conv2 output (probe.without_residual).
Hook = Annotated[str, Choice(("output", "conv2-without-residual"))]
# How the layer map reaches the input size: bilinear (correct) or the authors' uint8 + Lanczos.
Upsampling = Annotated[str, Choice(("bilinear", "uint8-lanczos"))]
# Added to Grad-CAM's weighted sum before its ReLU: 0 (correct) or the authors' 1.
Offset = Annotated[float, Number(-math.inf)]
UPSAMPLERS = {"bilinear": upsample, "uint8-lanczos": uint8_lanczos_upsample}


def class_activation_map(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    layer: str,
    layer_map: LayerMap,
    target: str = "given",
    hook: str = "output",
    upsampling: str = "bilinear",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One probe at ``layer`` (``hook``: where A is taken), ``layer_map`` of its (A, G),
    upsampled to the input (``upsampling``); the logits are those of the probed network."""
    result = probe(
        model,
        images,
        targets,
        layers=[layer],
        target=target,
        without_residual=hook == "conv2-without-residual",
    )
    cam = layer_map(result.activations[0], result.gradients[0])
    return UPSAMPLERS[upsampling](cam, images.shape[-2:]), result.logits


def cam_family(layer_map: LayerMap) -> FamilyFunction:
    """The family of ``layer_map``: its map at ``layer``, upsampled bilinearly to the input."""

    def family(
        model: nn.Module,
        images: torch.Tensor,
        targets: torch.Tensor,
        layer: Layer = DEFAULT_LAYER,
        target: Target = "given",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return class_activation_map(model, images, targets, layer, layer_map, target)

    family.__doc__ = f"{layer_map.__doc__}\n\nUpsampled bilinearly to the input size."
    return family


# The authors' Grad-CAM (docs/protocol.md §6.4), one deviation per step; Guided Grad-CAM's
# Grad-CAM part has the same ones.
GRADCAM_DEVIATIONS = {
    "target": Deviation({"target": "predicted"}, "§6.1: gradcam.py:159-161, argmax of its net"),
    "hook": Deviation(
        {"hook": "conv2-without-residual"}, "§6.4: gradcam.py:42-64, block 2 run part by part"
    ),
    "offset": Deviation({"offset": 1.0}, "§6.4: gradcam.py:188-192, cam = np.ones(...)"),
    "upsampling": Deviation(
        {"upsampling": "uint8-lanczos"}, "§6.4: gradcam.py:194-197, uint8, LANCZOS, /255"
    ),
}


@register("gradcam", label="Grad-CAM", kind="cam", deviations=GRADCAM_DEVIATIONS)
def gradcam(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    layer: Layer = DEFAULT_LAYER,
    target: Target = "given",
    hook: Hook = "output",
    offset: Offset = 0.0,
    upsampling: Upsampling = "bilinear",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM at ``layer`` (:func:`gradcam_layer_map`), upsampled to the input size.
    The correct defaults; the authors' code is reproduced, one step at a time, by ``target``
    (predicted), ``hook`` (conv2-without-residual), ``offset`` (1) and ``upsampling``
    (uint8-lanczos)."""

    def layer_map(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return gradcam_layer_map(a, g, offset)

    return class_activation_map(model, images, targets, layer, layer_map, target, hook, upsampling)


# The other CAM families, after Grad-CAM (registered above with its deviations).
for _name, (_label, _layer_map) in LAYER_MAPS.items():
    if _name != "gradcam":
        register(_name, label=_label, kind="cam")(cam_family(_layer_map))
