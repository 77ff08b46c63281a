"""Saliency methods: a registry of families, the paper's twelve presets, and ``explain``.

Notation at a probed layer (PROTOCOL.md §3): activation A (N, C, h, w), the module's output, and
G = d(target logit)/dA. Layer maps are upsampled bilinearly (align_corners=False) to the input
size. Gradient maps (Guided BP, Input × Gradient, Guided Grad-CAM) become one channel by the sum
of absolute values over the input's three channels, without clipping. Maps are raw except where
a method defines a normalisation (NormGrad's per-layer min–max before combining layers).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xiqa.errors import InputError
from xiqa.probe import probe

Family = Callable[..., tuple[torch.Tensor, torch.Tensor]]  # -> (maps (N, H, W), logits)
FAMILIES: dict[str, Family] = {}
COMBINED_LAYERS = ["layer2.0", "layer3.0", "layer4.0", "layer4.2"]
PRESETS: dict[str, dict[str, Any]] = {
    **{
        f"normgrad-{virtual}-{kind}": {
            "family": "normgrad",
            "virtual_layer": virtual,
            "layers": layers,
        }
        for virtual in ("bias", "scaling", "conv1x1", "conv3x3")
        for kind, layers in (("single", ["layer4.2"]), ("combined", COMBINED_LAYERS))
    },
    "gradcam": {"family": "gradcam", "layer": "layer4.2"},
    "guided-gradcam": {"family": "guided-gradcam", "layer": "layer4.2"},
    "guided-backprop": {"family": "guided-backprop"},
    "input-x-gradient": {"family": "input-x-gradient"},
}


def register(name: str) -> Callable[[Family], Family]:
    def add(function: Family) -> Family:
        FAMILIES[name] = function
        return function

    return add


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


# --- NormGrad: the Frobenius norm of the gradient of a virtual identity layer's parameters ----


def normgrad_layer_map(a: torch.Tensor, g: torch.Tensor, virtual_layer: str) -> torch.Tensor:
    """NormGrad's map at one layer, (N, C, h, w) → (N, h, w), by the norm identities (the outer
    product G_u A_uᵀ is never formed)."""
    if virtual_layer == "bias":  # d/db of A + b is G
        return g.norm(dim=1)
    if virtual_layer == "scaling":  # d/ds of s ⊙ A is G ⊙ A
        return (a * g).norm(dim=1)
    if virtual_layer == "conv1x1":  # ‖G_u A_uᵀ‖_F = ‖G_u‖ ‖A_u‖
        return g.norm(dim=1) * a.norm(dim=1)
    if virtual_layer == "conv3x3":  # ‖G_u unfold(A)_uᵀ‖_F = ‖G_u‖ ‖3×3 patch of A at u‖
        patch_energy = 9 * F.avg_pool2d(
            a.pow(2).sum(1, keepdim=True), 3, stride=1, padding=1, count_include_pad=True
        )
        return g.norm(dim=1) * patch_energy.squeeze(1).sqrt()
    raise InputError(
        f"unknown NormGrad virtual_layer {virtual_layer!r}; choose bias, scaling, "
        "conv1x1 or conv3x3"
    )


def combine_layer_maps(maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """One layer: its map upsampled (raw). Several: each upsampled and min–max scaled, then
    combined by their geometric mean (paper eq. 7)."""
    if len(maps) == 1:
        return upsample(maps[0], size)
    scaled = torch.stack([minmax(upsample(m, size)) for m in maps])
    return scaled.clamp(min=0).prod(0).pow(1.0 / len(maps))


@register("normgrad")
def normgrad(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    virtual_layer: str = "conv1x1",
    layers: list[str] | tuple[str, ...] = ("layer4.2",),
):
    """NormGrad (Rebuffi et al., CVPR 2020) at any list of layers, from one forward/backward."""
    if isinstance(layers, str) or not layers:
        raise InputError("normgrad 'layers' must be a non-empty list of layer names")
    result = probe(model, images, targets, layers=list(layers))
    maps = [
        normgrad_layer_map(a, g, virtual_layer)
        for a, g in zip(result.activations, result.gradients, strict=True)
    ]
    return combine_layer_maps(maps, images.shape[-2:]), result.logits


# --- Grad-CAM and the gradient methods --------------------------------------------------------


def gradcam_layer_map(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Grad-CAM at one layer: ReLU(Σ_k α_k A_k) with α_k the spatial mean of G_k."""
    weights = g.mean(dim=(2, 3), keepdim=True)
    return (weights * a).sum(1).clamp(min=0)


@register("gradcam")
def gradcam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: str = "layer4.2"):
    """Grad-CAM (Selvaraju et al.), upsampled bilinearly to the input size."""
    result = probe(model, images, targets, layers=[layer])
    cam = gradcam_layer_map(result.activations[0], result.gradients[0])
    return upsample(cam, images.shape[-2:]), result.logits


@register("guided-backprop")
def guided_backprop(model: nn.Module, images: torch.Tensor, targets: torch.Tensor):
    """Guided Backpropagation (Springenberg et al.): every ReLU passes positive gradients only."""
    result = probe(model, images, targets, input_gradient=True, guided=True)
    return channel_abs_sum(result.input_gradient), result.logits


@register("input-x-gradient")
def input_x_gradient(model: nn.Module, images: torch.Tensor, targets: torch.Tensor):
    """Input × Gradient (Shrikumar et al.), all three channels."""
    result = probe(model, images, targets, input_gradient=True)
    return channel_abs_sum(images * result.input_gradient), result.logits


@register("guided-gradcam")
def guided_gradcam(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: str = "layer4.2"
):
    """Guided Grad-CAM: the reduced Guided BP map times the upsampled Grad-CAM map."""
    guided, logits = guided_backprop(model, images, targets)
    cam, _ = gradcam(model, images, targets, layer=layer)
    return guided * cam, logits


# --- the entry point ----------------------------------------------------------------------------


def resolve_method(method: str, params: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """(family, parameters) for a method name and optional overrides.

    ``params`` may name the family (a config entry); otherwise ``method`` must be a preset or a
    family. Unknown names and parameters are errors listing what is valid.
    """
    params = dict(params or {})
    family = params.pop("family", None)
    if family is None:
        if method in PRESETS:
            preset = dict(PRESETS[method])
            family = preset.pop("family")
            params = {**preset, **params}
        elif method in FAMILIES:
            family = method
        else:
            raise InputError(
                f"unknown method {method!r}; presets: {', '.join(PRESETS)}; "
                f"families: {', '.join(FAMILIES)}"
            )
    if family not in FAMILIES:
        raise InputError(f"unknown saliency family {family!r}; families: {', '.join(FAMILIES)}")
    accepted = list(inspect.signature(FAMILIES[family]).parameters)[3:]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) or "none"
        raise InputError(
            f"method {method!r}: family {family!r} takes no parameter "
            f"{', '.join(map(repr, unknown))} (it takes: {takes})"
        )
    return family, params


def explain_with_logits(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, method: str, **params
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`explain`, also returning the logits of the pass that made the maps."""
    family, params = resolve_method(method, params)
    targets = torch.as_tensor(targets, device=images.device).long().view(-1)
    if len(targets) != len(images):
        raise InputError(f"{len(targets)} targets for {len(images)} images")
    maps, logits = FAMILIES[family](model, images, targets, **params)
    return maps.float(), logits


def explain(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, method: str, **params
) -> torch.Tensor:
    """Saliency maps (N, H, W) float32 on the images' device, one per image, for the given
    target class of each image. ``images`` is the model's normalised input (N, 3, H, W);
    ``method`` a family or preset name; ``params`` override the preset's. The model is left as
    it was: no hooks, no parameter gradients, no replaced modules, same mode."""
    return explain_with_logits(model, images, targets, method, **params)[0]
