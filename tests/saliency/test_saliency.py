"""Every probe-based saliency method against an independent computation, in float64.

NormGrad is checked against its definition computed the slow way: a virtual identity layer with
its own parameters at every location is inserted after the probed module, autograd gives the
gradient of the target logit with respect to those parameters, and the map is the Frobenius norm
of that gradient per location (for the selective variant, of its positive part). Grad-CAM,
Guided Backprop, Input × Gradient and Guided Grad-CAM are checked against Captum (and Grad-CAM
also against pytorch-grad-cam); these maps are compared after per-image min-max scaling, to
1e-4. Grad-CAM++, XGrad-CAM, LayerCAM and HiResCAM are checked against pytorch-grad-cam's raw
maps (its own captured activations and gradients through its ``get_cam_image``, before its
min-max and resize), without scaling. The generic tests (model untouched, clean logits) run
every registered family; tests/test_saliency_families.py checks the perturbation, path and
noise families.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xiqa.errors import InputError
from xiqa.model.network import build_model
from xiqa.saliency import (
    FAMILIES,
    PAPER_METHODS,
    PRESETS,
    explain,
    explain_with_logits,
)
from xiqa.saliency.maps import upsample
from xiqa.saliency.probe import named_module

TOLERANCE = 1e-4
SIZE = 96  # layer4 is 3x3: conv3x3 patches differ between corner and centre


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """A ResNet-34 (the paper's layer names) with non-trivial batch-norm statistics, in float64."""
    torch.manual_seed(0)
    net = build_model("resnet34")
    net.train()
    with torch.no_grad():  # settle batch-norm running statistics on random data
        for _ in range(3):
            net(torch.randn(8, 3, SIZE, SIZE))
    return net.double().eval()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(3, 3, SIZE, SIZE, generator=generator, dtype=torch.float64)
    return images, torch.tensor([1, 0, 1])


def scaled(maps) -> np.ndarray:
    maps = np.asarray(torch.as_tensor(maps).detach().double())
    flat = maps.reshape(len(maps), -1)
    low, high = flat.min(1, keepdims=True), flat.max(1, keepdims=True)
    return ((flat - low) / np.where(high > low, high - low, 1)).reshape(maps.shape)


def assert_maps_close(ours, oracle) -> float:
    difference = np.abs(scaled(ours) - scaled(oracle)).max()
    assert difference <= TOLERANCE, difference
    return difference


# --- NormGrad: brute force -----------------------------------------------------------------


class VirtualLayer(nn.Module):
    """An identity layer with separate parameters at each location u of an (C, h, w) map."""

    def __init__(self, kind: str, channels: int, h: int, w: int):
        super().__init__()
        self.kind, self.h, self.w = kind, h, w
        locations = h * w
        eye = torch.eye(channels, dtype=torch.float64)
        if kind == "bias":
            self.weight = nn.Parameter(torch.zeros(locations, channels, dtype=torch.float64))
        elif kind in ("scaling", "selective"):
            self.weight = nn.Parameter(torch.ones(locations, channels, dtype=torch.float64))
        elif kind == "conv1x1":
            self.weight = nn.Parameter(eye.repeat(locations, 1, 1))
        else:  # conv3x3: weight (u, C_out, C_in, 3, 3), the identity at the kernel's centre
            kernel = torch.zeros(channels, channels, 3, 3, dtype=torch.float64)
            kernel[:, :, 1, 1] = eye
            self.weight = nn.Parameter(kernel.repeat(locations, 1, 1, 1, 1))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        n, c, h, w = a.shape
        flat = a.flatten(2)  # (N, C, u)
        if self.kind == "bias":
            out = flat + self.weight.T
        elif self.kind in ("scaling", "selective"):
            out = flat * self.weight.T
        elif self.kind == "conv1x1":
            out = torch.einsum("uoc,ncu->nou", self.weight, flat)
        else:
            patches = F.unfold(a, 3, padding=1)  # (N, C*9, u), ordered (c, ky, kx)
            out = torch.einsum("uok,nku->nou", self.weight.flatten(2), patches)
        return out.view(n, c, h, w)

    def location_norms(self) -> torch.Tensor:
        grad = self.weight.grad
        if self.kind == "selective":  # Rebuffi et al.: only the positive part of the gradient
            grad = grad.clamp(min=0)
        return grad.flatten(1).norm(dim=1).view(self.h, self.w)


def brute_force_normgrad(model, image, target, kind, layers) -> torch.Tensor:
    """NormGrad for one image by its definition; layers combined by min-max + geometric mean."""
    net = copy.deepcopy(model)
    virtual = {}

    def insert(name):
        def hook(module, inputs, output):
            if name not in virtual:
                _, c, h, w = output.shape
                virtual[name] = VirtualLayer(kind, c, h, w)
            return virtual[name](output)

        return hook

    for name in layers:
        named_module(net, name).register_forward_hook(insert(name))
    logits = net(image[None])
    logits[0, target].backward()
    maps = []
    for name in layers:
        layer_map = virtual[name].location_norms()[None, None]
        maps.append(
            F.interpolate(layer_map, size=image.shape[-2:], mode="bilinear", align_corners=False)[
                0, 0
            ]
        )
    if len(maps) == 1:
        return maps[0]
    product = torch.ones_like(maps[0])
    for m in maps:
        span = m.max() - m.min()
        product = product * ((m - m.min()) / span if span > 0 else torch.ones_like(m))
    return product ** (1 / len(maps))


@pytest.mark.parametrize("kind", ["bias", "scaling", "selective", "conv1x1", "conv3x3"])
@pytest.mark.parametrize(
    "layers",
    [["layer4.2"], ["layer2.0"], ["layer2.0", "layer3.0", "layer4.0", "layer4.2"]],
    ids=["single", "layer2.0", "combined"],
)
def test_normgrad_equals_the_brute_force_definition(model, batch, kind, layers):
    images, targets = batch
    ours = explain(model, images, targets, "normgrad", virtual_layer=kind, layers=layers)
    oracle = torch.stack(
        [
            brute_force_normgrad(model, images[i], int(targets[i]), kind, layers)
            for i in range(len(images))
        ]
    )
    if kind == "bias" and layers == ["layer4.2"]:
        # The gradient of an average-pooled logit is uniform: the paper's constant map.
        spread = ours.flatten(1).max(1).values - ours.flatten(1).min(1).values
        assert spread.max() <= 1e-6 * ours.abs().max()
        np.testing.assert_allclose(ours.numpy(), oracle.numpy(), rtol=1e-5)
    else:
        assert_maps_close(ours, oracle)


def test_presets_are_the_papers_twelve_and_the_authors_versions(model, batch):
    assert len(PAPER_METHODS) == 12 and len(PRESETS) == 24
    assert set(PRESETS) == set(PAPER_METHODS) | {f"midl2021-{name}" for name in PAPER_METHODS}
    images, targets = batch
    for name, entry in PRESETS.items():
        by_name = explain(model, images, targets, name)
        params = {k: v for k, v in entry.items() if k != "family"}
        by_family = explain(model, images, targets, entry["family"], **params)
        torch.testing.assert_close(by_name, by_family)
        assert by_name.shape == (3, SIZE, SIZE) and by_name.dtype == torch.float32


# --- Grad-CAM and gradient methods: Captum and pytorch-grad-cam ---------------------------------


def captum_gradcam(model, images, targets, layer):
    from captum.attr import LayerAttribution, LayerGradCam

    cam = LayerGradCam(model, named_module(model, layer)).attribute(
        images, target=targets.tolist(), relu_attributions=True
    )
    return LayerAttribution.interpolate(cam, images.shape[-2:], interpolate_mode="bilinear")[:, 0]


def without_inplace_relus(model):
    """Captum's backward hooks cannot wrap in-place ReLUs; its copy of the model gets out-of-place
    ones (the same function)."""
    net = copy.deepcopy(model)
    for module in net.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return net


@pytest.mark.parametrize("layer", ["layer4.2", "layer3.1"])
def test_gradcam_equals_captum(model, batch, layer):
    images, targets = batch
    ours = explain(model, images, targets, "gradcam", layer=layer)
    assert_maps_close(ours, captum_gradcam(model, images, targets, layer))


def test_gradcam_equals_pytorch_grad_cam(model, batch):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    images, targets = batch
    ours = explain(model, images, targets, "gradcam", layer="layer4.2")
    with GradCAM(model=model, target_layers=[model.layer4[2]]) as cam:
        oracle = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    assert_maps_close(ours, oracle)


CAM_ORACLES = {  # family: pytorch-grad-cam's class
    "gradcam-plusplus": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
}
RAW_TOLERANCE = 1e-7  # relative to the map's maximum: our maps are float32 (rounding ≤ 6e-8)


def pytorch_grad_cam_raw(class_name, model, images, targets, layer) -> torch.Tensor:
    """pytorch-grad-cam's map before its min-max scaling and resize: the activations and
    gradients it captured itself, through its ``get_cam_image``, then the ReLU that its
    ``compute_cam_per_layer`` applies."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net = copy.deepcopy(model)  # the library accumulates parameter gradients
    module = named_module(net, layer)
    wanted = [ClassifierOutputTarget(int(t)) for t in targets]
    with getattr(pytorch_grad_cam, class_name)(model=net, target_layers=[module]) as cam:
        cam(input_tensor=images, targets=wanted)
        (a,), (g,) = cam.activations_and_grads.activations, cam.activations_and_grads.gradients
        raw = cam.get_cam_image(images, module, wanted, a.numpy(), g.numpy(), False)
    return torch.from_numpy(np.maximum(raw, 0))


def with_logits_scaled(model, factor: float):
    """A copy whose logits are ``factor`` times the model's (the final layer scaled)."""
    net = copy.deepcopy(model)
    with torch.no_grad():
        net.fc.weight *= factor
        net.fc.bias *= factor
    return net


@pytest.mark.parametrize("family", CAM_ORACLES)
@pytest.mark.parametrize("layer", ["layer4.2", "layer3.1"])
def test_cam_family_equals_pytorch_grad_cam_raw(model, batch, family, layer):
    """Raw maps, no scaling: ours against the library's layer map upsampled by the documented
    rule (bilinear, align_corners=False). The library adds an ε where the definitions have
    none (XGrad-CAM: 1e-7 next to Σ A_k, negligible; Grad-CAM++: 1e-6 next to G² ≈ 1e-5
    here, which would change α by ~15%): for Grad-CAM++ the logits are scaled by 1e6 so that
    its ε is negligible too (ours is the ε-free formula; a logit scale changes α)."""
    images, targets = batch
    if family == "gradcam-plusplus":
        model = with_logits_scaled(model, 1e6)
    ours = explain(model, images, targets, family, layer=layer)
    raw = pytorch_grad_cam_raw(CAM_ORACLES[family], model, images, targets, layer)
    oracle = upsample(raw, (SIZE, SIZE))
    assert oracle.abs().max() > 0  # a map to compare, not zeros
    difference = (ours.double() - oracle).abs().max() / oracle.abs().max()
    assert difference <= RAW_TOLERANCE, difference


def test_guided_backprop_equals_captum(model, batch):
    from captum.attr import GuidedBackprop

    images, targets = batch
    ours = explain(model, images, targets, "guided-backprop")
    oracle = GuidedBackprop(without_inplace_relus(model)).attribute(images, target=targets.tolist())
    assert_maps_close(ours, oracle.abs().sum(1))


def test_input_x_gradient_equals_captum(model, batch):
    from captum.attr import InputXGradient

    images, targets = batch
    ours = explain(model, images, targets, "input-x-gradient")
    oracle = InputXGradient(model).attribute(images, target=targets.tolist())
    assert_maps_close(ours, oracle.abs().sum(1))


def test_guided_gradcam_equals_captum(model, batch):
    from captum.attr import GuidedGradCam

    images, targets = batch
    ours = explain(model, images, targets, "guided-gradcam", layer="layer4.2")
    net = without_inplace_relus(model)
    oracle = GuidedGradCam(net, net.layer4[2]).attribute(
        images, target=targets.tolist(), interpolate_mode="bilinear"
    )
    assert_maps_close(ours, oracle.abs().sum(1))


# --- the model is left as it was; errors ------------------------------------------------------


def training_model() -> nn.Module:
    torch.manual_seed(2)
    net = build_model("resnet34").double()
    net.train()  # a model in training mode stays in training mode, statistics unchanged
    return net


def assert_left_as_it_was(net: nn.Module, run) -> None:
    """``run(net)`` leaves ``net`` in training mode, with the same state, modules and
    parameters, no hooks and no parameter gradients."""
    state = {k: v.clone() for k, v in net.state_dict().items()}
    modules = dict(net.named_modules())
    run(net)
    assert net.training and all(m.training for m in net.modules())
    assert dict(net.named_modules()) == modules
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key
    for module in net.modules():
        assert not module._forward_hooks and not module._backward_hooks
        assert not module._forward_pre_hooks
    assert all(p.grad is None for p in net.parameters())
    assert all(p.requires_grad for p in net.parameters())


def test_model_is_untouched(batch):
    images, targets = batch

    def run_presets(net):
        for name in PRESETS:
            explain(net, images, targets, name)

    assert_left_as_it_was(training_model(), run_presets)


# The families that run many passes, with few of them, for the generic test below.
FEW_PASSES = {
    "scorecam": {"layer": "layer1.0", "batch_size": 48},
    "rise": {"n_masks": 6, "grid": 3, "batch_size": 4},
    "integrated-gradients": {"n_steps": 3, "batch_size": 4},
    "smoothgrad": {"n_samples": 3, "batch_size": 4},
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_leaves_the_model_untouched_and_returns_clean_logits(family):
    """Whatever passes a family makes (probes, masked or noisy inputs), the model is left as it
    was, the maps are (N, H, W) float32 and finite, and the logits are the model's on the
    unperturbed images in evaluation mode (shards store the probability from them)."""
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(2, 3, 32, 32, generator=generator, dtype=torch.float64)
    targets = torch.tensor([1, 0])
    result = {}

    def run(net):
        result["maps"], result["logits"] = explain_with_logits(
            net, images, targets, family, **FEW_PASSES.get(family, {})
        )

    net = training_model()
    assert_left_as_it_was(net, run)
    maps, logits = result["maps"], result["logits"]
    assert maps.shape == (2, 32, 32) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all()
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(logits, net(images), rtol=1e-12, atol=1e-12)


def test_unknown_names_are_errors_listing_what_is_valid(model, batch):
    images, targets = batch
    with pytest.raises(InputError, match="unknown method 'normgrad-foo'; presets: .*gradcam"):
        explain(model, images, targets, "normgrad-foo")
    with pytest.raises(InputError, match="unknown saliency family 'lime'"):
        explain(model, images, targets, "mine", family="lime")
    with pytest.raises(InputError, match=r"unknown layer 'layer9.1'; .*layer4\.2"):
        explain(model, images, targets, "gradcam", layer="layer9.1")
    with pytest.raises(InputError, match="takes no parameter 'layers'"):
        explain(model, images, targets, "gradcam", layers=["layer4.2"])
    with pytest.raises(InputError, match="unknown NormGrad virtual_layer 'conv5x5'"):
        explain(model, images, targets, "normgrad", virtual_layer="conv5x5")
    with pytest.raises(InputError, match="runs more than once"):
        explain(model, images, targets, "gradcam", layer="layer4.2.relu")
