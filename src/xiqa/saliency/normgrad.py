"""NormGrad (Rebuffi et al., CVPR 2020): the norm of the gradient of a virtual identity layer's
parameters, inserted after a probed layer, at every location."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from xiqa.saliency.maps import DEFAULT_LAYER, minmax, upsample
from xiqa.saliency.probe import probe
from xiqa.saliency.registry import Choice, Deviation, Layers, Target, register


def patch_norm(a: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) → (N, h, w): the norm of the zero-padded 3×3 patch of A at each location."""
    energy = 9 * F.avg_pool2d(
        a.pow(2).sum(1, keepdim=True), 3, stride=1, padding=1, count_include_pad=True
    )
    return energy.squeeze(1).sqrt()


# The map of each virtual layer from (A, G), by the norm identities: the outer product G_u A_uᵀ
# is never formed. ``selective`` is Rebuffi et al.'s class-selective variant.
VIRTUAL_LAYERS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "bias": lambda a, g: g.norm(dim=1),  # d/db of A + b is G
    "scaling": lambda a, g: (a * g).norm(dim=1),  # d/ds of s ⊙ A is G ⊙ A
    "selective": lambda a, g: (a * g).clamp(min=0).norm(dim=1),  # ‖max(A_u ⊙ G_u, 0)‖₂
    "conv1x1": lambda a, g: g.norm(dim=1) * a.norm(dim=1),  # ‖G_u A_uᵀ‖_F = ‖G_u‖ ‖A_u‖
    "conv3x3": lambda a, g: g.norm(dim=1) * patch_norm(a),  # ‖G_u‖ ‖3×3 patch of A at u‖
}


def normgrad_layer_map(a: torch.Tensor, g: torch.Tensor, virtual_layer: str) -> torch.Tensor:
    """NormGrad's map at one layer, (N, C, h, w) → (N, h, w), for one of
    :data:`VIRTUAL_LAYERS`."""
    return VIRTUAL_LAYERS[virtual_layer](a, g)


def combine_layer_maps(
    maps: list[torch.Tensor], size: tuple[int, int], combine: str = "geometric-mean"
) -> torch.Tensor:
    """``geometric-mean`` (paper eq. 7): one layer, its map upsampled (raw); several, each
    upsampled and min–max scaled, then their geometric mean. ``product`` (the authors' code,
    docs/protocol.md §6.6): every layer's map upsampled and min–max scaled, one layer too, then
    their plain product (same arg-max as the geometric mean, smaller values). A constant layer
    map (NormGrad bias at the last block: the authors' 0/0) scales to ones."""
    if combine == "geometric-mean" and len(maps) == 1:
        return upsample(maps[0], size)
    scaled = torch.stack([minmax(upsample(m, size)) for m in maps]).clamp(min=0)
    if combine == "product":
        return scaled.prod(0)
    return scaled.prod(0).pow(1.0 / len(maps))


@register(
    "normgrad",
    label="NormGrad",
    kind="normgrad",
    deviations={
        "target": Deviation({"target": "predicted"}, "§6.1: normgrad.py:68-74, one-hot of argmax"),
        "combine": Deviation({"combine": "product"}, "§6.6: normgrad.py:128-133, final *= map"),
    },
)
def normgrad(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    virtual_layer: Annotated[str, Choice(tuple(VIRTUAL_LAYERS))] = "conv1x1",
    layers: Layers = (DEFAULT_LAYER,),
    target: Target = "given",
    combine: Annotated[str, Choice(("geometric-mean", "product"))] = "geometric-mean",
) -> tuple[torch.Tensor, torch.Tensor]:
    """NormGrad (Rebuffi et al., CVPR 2020) at any list of layers, from one forward/backward:
    at each location u of each layer, ‖∂(target logit)/∂θ_u‖ for the parameters θ of a virtual
    identity layer (``virtual_layer``) after it; several layers are combined by
    :func:`combine_layer_maps` (``combine``). ``target``: whose logit (probe.target_score)."""
    result = probe(model, images, targets, layers=list(layers), target=target)
    maps = [
        normgrad_layer_map(a, g, virtual_layer)
        for a, g in zip(result.activations, result.gradients, strict=True)
    ]
    return combine_layer_maps(maps, images.shape[-2:], combine), result.logits
