"""Saliency methods: a registry of families, the paper's twelve presets, and ``explain``.

Notation at a probed layer (docs/protocol.md §3):
activation A (N, C, h, w), the module's output, and
G = d(target logit)/dA. Layer maps are upsampled bilinearly (align_corners=False) to the input
size. Gradient maps (Guided BP, Input × Gradient, Guided Grad-CAM, Integrated Gradients,
SmoothGrad) become one channel by the sum of absolute values over the input's three channels,
without clipping. Maps are raw except where a method defines a normalisation (NormGrad's
per-layer min–max before combining layers).

Three kinds of family:
- from one probe (one forward, one backward): NormGrad (virtual layers bias, scaling, conv1x1,
  conv3x3, selective), Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM, Guided BP,
  Input × Gradient, Guided Grad-CAM;
- perturbation (forward passes only, no gradients): Score-CAM (one masked forward per channel
  of the layer) and RISE (one per random mask);
- path and noise (one forward and backward per step or sample): Integrated Gradients and
  SmoothGrad.
The perturbation, path and noise families run their passes on the images' device in chunks of
``batch_size`` inputs, so memory stays bounded whatever the number of passes; their random
draws come from a CPU ``torch.Generator`` seeded by ``seed`` and are the same for every image,
so an image's map depends neither on the device nor on the batch it came in. Every family
returns the logits of one clean forward pass on the unperturbed images.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xiqa.errors import InputError
from xiqa.saliency.probe import forward, probe

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
    product G_u A_uᵀ is never formed). ``selective`` is Rebuffi et al.'s class-selective
    variant: ‖max(A_u ⊙ G_u, 0)‖₂, the scaling layer's gradient with its negative part dropped."""
    if virtual_layer == "bias":  # d/db of A + b is G
        return g.norm(dim=1)
    if virtual_layer == "scaling":  # d/ds of s ⊙ A is G ⊙ A
        return (a * g).norm(dim=1)
    if virtual_layer == "selective":  # the scaling layer's gradient, positive part only
        return (a * g).clamp(min=0).norm(dim=1)
    if virtual_layer == "conv1x1":  # ‖G_u A_uᵀ‖_F = ‖G_u‖ ‖A_u‖
        return g.norm(dim=1) * a.norm(dim=1)
    if virtual_layer == "conv3x3":  # ‖G_u unfold(A)_uᵀ‖_F = ‖G_u‖ ‖3×3 patch of A at u‖
        patch_energy = 9 * F.avg_pool2d(
            a.pow(2).sum(1, keepdim=True), 3, stride=1, padding=1, count_include_pad=True
        )
        return g.norm(dim=1) * patch_energy.squeeze(1).sqrt()
    raise InputError(
        f"unknown NormGrad virtual_layer {virtual_layer!r}; choose bias, scaling, "
        "selective, conv1x1 or conv3x3"
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


# --- the CAM family: channel weights from (A, G) at one layer ---------------------------------


def gradcam_layer_map(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Grad-CAM at one layer: ReLU(Σ_k α_k A_k) with α_k the spatial mean of G_k."""
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


def class_activation_map(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    layer: str,
    layer_map: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """One probe at ``layer``, ``layer_map`` of its (A, G), upsampled bilinearly to the input."""
    result = probe(model, images, targets, layers=[layer])
    cam = layer_map(result.activations[0], result.gradients[0])
    return upsample(cam, images.shape[-2:]), result.logits


@register("gradcam")
def gradcam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: str = "layer4.2"):
    """Grad-CAM (Selvaraju et al.), upsampled bilinearly to the input size."""
    return class_activation_map(model, images, targets, layer, gradcam_layer_map)


@register("gradcam-plusplus")
def gradcam_plusplus(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: str = "layer4.2"
):
    """Grad-CAM++ (Chattopadhyay et al.), upsampled bilinearly to the input size."""
    return class_activation_map(model, images, targets, layer, gradcam_plusplus_layer_map)


@register("xgradcam")
def xgradcam(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: str = "layer4.2"
):
    """XGrad-CAM (Fu et al.), upsampled bilinearly to the input size."""
    return class_activation_map(model, images, targets, layer, xgradcam_layer_map)


@register("layercam")
def layercam(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: str = "layer4.2"
):
    """LayerCAM (Jiang et al.), upsampled bilinearly to the input size."""
    return class_activation_map(model, images, targets, layer, layercam_layer_map)


@register("hirescam")
def hirescam(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: str = "layer4.2"
):
    """HiResCAM (Draelos & Carin), upsampled bilinearly to the input size."""
    return class_activation_map(model, images, targets, layer, hirescam_layer_map)


# --- the gradient methods ---------------------------------------------------------------------


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


# --- perturbation, path and noise: many passes, run in chunks on the images' device ------------


def check_count(family: str, name: str, value: Any, least: int = 1) -> int:
    """``value`` as an integer ≥ ``least``, or an error naming the family and parameter."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InputError(f"{family} parameter {name!r} must be an integer ≥ {least}, not {value!r}")
    return value


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


def scorecam_masks(activations: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) activation channels → (B, H, W) masks in [0, 1], as pytorch-grad-cam's ScoreCAM
    makes them: bilinear upsampling with align_corners=True, then (m − min) / (max − min + 1e-8)
    per mask (a constant channel gives the zero mask)."""
    up = F.interpolate(activations.unsqueeze(1), size=size, mode="bilinear", align_corners=True)
    flat = up.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low + 1e-8)).view(-1, *size)


@register("scorecam")
def scorecam(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    layer: str = "layer4.2",
    batch_size: int = 32,
):
    """Score-CAM (Wang et al., CVPRW 2020): each channel A_k of ``layer`` becomes a mask M_k
    (:func:`scorecam_masks`), the image is multiplied by it and run forward; the channel's
    weight is the softmax over channels of those target logits (the paper's increase of
    confidence f(X ⊙ M_k) − f(X_b): the softmax ignores the common baseline), and the map is
    ReLU(Σ_k w_k A_k), upsampled bilinearly. One masked forward per image and channel (512 at
    a ResNet's layer4), ``batch_size`` at a time."""
    check_count("scorecam", "batch_size", batch_size)
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


@register("rise")
def rise(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    n_masks: int = 4000,
    grid: int = 7,
    p: float = 0.5,
    seed: int = 0,
    batch_size: int = 32,
):
    """RISE (Petsiuk et al., BMVC 2018): the map is Σ_i P_i M_i / (n_masks · p), where M_i are
    random masks (:class:`RiseMasks`, shared by all images) and P_i the softmax probability
    of the target class for the image multiplied by M_i. One masked forward per image and
    mask, ``batch_size`` at a time. Defaults: 4000 masks, a 7 × 7 grid, p = 0.5."""
    check_count("rise", "n_masks", n_masks)
    check_count("rise", "grid", grid)
    check_count("rise", "batch_size", batch_size)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
        raise InputError(f"rise parameter 'p' must be a probability in (0, 1], not {p!r}")
    check_count("rise", "seed", seed, least=0)
    logits, _ = forward(model, images)
    n, size, device = len(images), images.shape[-2:], images.device
    masks = RiseMasks(n_masks, grid, float(p), seed, size, device, images.dtype)

    def masked(image: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return images[image] * masks(k).unsqueeze(1)

    scores = perturbed_logits(model, n, n_masks, masked, batch_size, device).softmax(2)
    probabilities = of_targets(scores, targets)  # (N, n_masks)
    maps = sum(
        probabilities[:, k] @ masks(k).flatten(1)
        for k in torch.arange(n_masks, device=device).split(batch_size)
    )
    return maps.view(n, *size) / (n_masks * p), logits


@register("integrated-gradients")
def integrated_gradients(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    n_steps: int = 50,
    batch_size: int = 32,
):
    """Integrated Gradients (Sundararajan et al., ICML 2017) from the zero baseline by the
    right Riemann sum of the paper (Captum's method="riemann_right"):
    IG = x ⊙ (1/m) Σ_{k=1..m} ∇f(k x / m), then the channels' absolute sum. One forward and
    backward per image and step, ``batch_size`` at a time."""
    check_count("integrated-gradients", "n_steps", n_steps)
    check_count("integrated-gradients", "batch_size", batch_size)
    logits, _ = forward(model, images)
    alphas = torch.arange(1, n_steps + 1, device=images.device, dtype=images.dtype) / n_steps

    def path_point(image: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return images[image] * alphas[k, None, None, None]

    total = summed_input_gradients(
        model, targets, n_steps, path_point, lambda gradient: gradient, batch_size
    )
    return channel_abs_sum(images * total / n_steps), logits


@register("smoothgrad")
def smoothgrad(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    n_samples: int = 50,
    stdev: float = 0.15,
    seed: int = 0,
    batch_size: int = 32,
):
    """SmoothGrad (Smilkov et al., 2017): the mean over ``n_samples`` noisy copies x + ε of the
    gradient map (the channels' absolute sum of ∇f(x + ε)), ε ~ N(0, σ²) with σ = ``stdev`` ×
    (max − min of the image), the paper's noise level. The standard normal draws are float32,
    drawn at once from a CPU generator seeded with ``seed``, the same for every image; they
    are scaled in float32 exactly as Captum's NoiseTunnel scales its draws. One forward and
    backward per image and sample, ``batch_size`` at a time."""
    check_count("smoothgrad", "n_samples", n_samples)
    check_count("smoothgrad", "batch_size", batch_size)
    check_count("smoothgrad", "seed", seed, least=0)
    if isinstance(stdev, bool) or not isinstance(stdev, (int, float)) or stdev < 0:
        raise InputError(f"smoothgrad parameter 'stdev' must be a number ≥ 0, not {stdev!r}")
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
