"""Saliency methods: the paper's twelve presets, ``resolve_method`` and ``explain``.

Notation at a probed layer (docs/protocol.md §3):
activation A (N, C, h, w), the module's output, and
G = d(target logit)/dA. Layer maps are upsampled bilinearly (align_corners=False) to the input
size. Gradient maps (Guided BP, Input × Gradient, Guided Grad-CAM, Integrated Gradients,
SmoothGrad) become one channel by the sum of absolute values over the input's three channels,
without clipping. Maps are raw except where a method defines a normalisation (NormGrad's
per-layer min–max before combining layers).

Each family is a module's function registered in :data:`FAMILIES`
(:mod:`xiqa.saliency.registry`) with its label, kind and parameters. The families:
- from one probe (one forward, one backward): NormGrad (:mod:`~xiqa.saliency.normgrad`, virtual
  layers bias, scaling, conv1x1, conv3x3, selective), Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM,
  HiResCAM (:mod:`~xiqa.saliency.cam`), Guided BP, Input × Gradient, Guided Grad-CAM
  (:mod:`~xiqa.saliency.gradient`);
- perturbation (forward passes only, no gradients): Score-CAM (one masked forward per channel
  of the layer) and RISE (one per random mask) (:mod:`~xiqa.saliency.perturbation`);
- path and noise (one forward and backward per step or sample): Integrated Gradients and
  SmoothGrad (:mod:`~xiqa.saliency.path`).
The perturbation, path and noise families run their passes on the images' device in chunks of
``batch_size`` inputs, so memory stays bounded whatever the number of passes; their random
draws come from a CPU ``torch.Generator`` seeded by ``seed`` and are the same for every image,
so an image's map depends neither on the device nor on the batch it came in. Every family
returns the logits of one clean forward pass on the unperturbed images.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xiqa.errors import InputError

# The family modules register themselves on import.
from xiqa.saliency import cam, gradient, normgrad, path, perturbation  # noqa: F401
from xiqa.saliency.maps import DEFAULT_LAYER
from xiqa.saliency.registry import FAMILIES

# The paper's combined NormGrad set, as an alias resolved per architecture (for its ResNet-34:
# layer2.0, layer3.0, layer4.0, layer4.2), so the presets work on every architecture.
COMBINED_LAYERS = ["combined"]
PRESETS: dict[str, dict[str, Any]] = {
    **{
        f"normgrad-{virtual}-{kind}": {
            "family": "normgrad",
            "virtual_layer": virtual,
            "layers": layers,
        }
        for virtual in ("bias", "scaling", "conv1x1", "conv3x3")
        for kind, layers in (("single", [DEFAULT_LAYER]), ("combined", COMBINED_LAYERS))
    },
    "gradcam": {"family": "gradcam", "layer": DEFAULT_LAYER},
    "guided-gradcam": {"family": "guided-gradcam", "layer": DEFAULT_LAYER},
    "guided-backprop": {"family": "guided-backprop"},
    "input-x-gradient": {"family": "input-x-gradient"},
}


def authors_overrides(family: str) -> dict[str, Any]:
    """Every deviation of the authors' code in ``family`` at once (docs/protocol.md §6)."""
    return {
        name: value
        for deviation in FAMILIES[family].deviations.values()
        for name, value in deviation.overrides.items()
    }


def audit_variants(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The audit of one method entry (its ``family`` and parameters): ``correct`` (the entry),
    each deviation of the authors' code alone (by its name), and ``all`` of them together; empty
    for a family without deviations."""
    deviations = FAMILIES[entry["family"]].deviations
    if not deviations:
        return {}
    return {
        "correct": dict(entry),
        **{name: {**entry, **d.overrides} for name, d in deviations.items()},
        "all": {**entry, **authors_overrides(entry["family"])},
    }


# The maps exactly as the authors' MIDL 2021 code handed them to its pointing game: each of the
# paper's twelve methods with every deviation on (``midl2021-gradcam``, ...).
PAPER_METHODS = tuple(PRESETS)
PRESETS.update(
    {
        f"midl2021-{name}": {**PRESETS[name], **authors_overrides(PRESETS[name]["family"])}
        for name in PAPER_METHODS
    }
)


def resolve_method(method: str, params: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """(family, parameters) for a method name and optional overrides.

    ``params`` may name the family (a config entry); otherwise ``method`` must be a preset or a
    family. Unknown names and parameters are errors listing what is valid, and so is a value the
    family's parameter does not accept (layer names are checked against the model later).
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
    accepted = FAMILIES[family].params
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) or "none"
        raise InputError(
            f"method {method!r}: family {family!r} takes no parameter "
            f"{', '.join(map(repr, unknown))} (it takes: {takes})"
        )
    FAMILIES[family].check(method, params)
    return family, params


def explain_with_logits(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, method: str, **params
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`explain`, also returning the logits of the pass that made the maps."""
    family, params = resolve_method(method, params)
    params = FAMILIES[family].resolve_layers(method, model, params)
    targets = torch.as_tensor(targets, device=images.device).long().view(-1)
    if len(targets) != len(images):
        raise InputError(f"{len(targets)} targets for {len(images)} images")
    try:
        maps, logits = FAMILIES[family].function(model, images, targets, **params)
    except InputError as exc:
        raise InputError(f"method {method!r}: {exc}") from None
    return maps.float(), logits


def explain(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, method: str, **params
) -> torch.Tensor:
    """Saliency maps (N, H, W) float32 on the images' device, one per image, for the given
    target class of each image. ``images`` is the model's normalised input (N, 3, H, W);
    ``method`` a family or preset name; ``params`` override the preset's. The model is left as
    it was: no hooks, no parameter gradients, no replaced modules, same mode."""
    return explain_with_logits(model, images, targets, method, **params)[0]
