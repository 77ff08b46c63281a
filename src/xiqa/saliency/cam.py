"""The CAM family: one layer's channels A_k combined by weights from its gradients G, from one
probe. Each method is a layer map of (A, G); the families are registered from :data:`LAYER_MAPS`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from xiqa.saliency.maps import DEFAULT_LAYER, upsample
from xiqa.saliency.probe import probe
from xiqa.saliency.registry import FamilyFunction, Layer, register

LayerMap = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (A, G) (N, C, h, w) -> (N, h, w)


def gradcam_layer_map(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Grad-CAM at one layer (Selvaraju et al., ICCV 2017): ReLU(Σ_k α_k A_k) with α_k the
    spatial mean of G_k."""
    weights = g.mean(dim=(2, 3), keepdim=True)
    return (weights * a).sum(1).clamp(min=0)


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


def class_activation_map(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    layer: str,
    layer_map: LayerMap,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One probe at ``layer``, ``layer_map`` of its (A, G), upsampled bilinearly to the input."""
    result = probe(model, images, targets, layers=[layer])
    cam = layer_map(result.activations[0], result.gradients[0])
    return upsample(cam, images.shape[-2:]), result.logits


def cam_family(layer_map: LayerMap) -> FamilyFunction:
    """The family of ``layer_map``: its map at ``layer``, upsampled bilinearly to the input."""

    def family(
        model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: Layer = DEFAULT_LAYER
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return class_activation_map(model, images, targets, layer, layer_map)

    family.__doc__ = f"{layer_map.__doc__}\n\nUpsampled bilinearly to the input size."
    return family


for _name, (_label, _layer_map) in LAYER_MAPS.items():
    register(_name, label=_label, kind="cam")(cam_family(_layer_map))
