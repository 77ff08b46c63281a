"""The perturbation, path and noise families against independent computations, in float64.

Maps are compared raw, as the largest difference relative to the oracle map's maximum. Ours are
float32 (rounding ≤ 6e-8), so TOLERANCE is 1e-7 unless the oracle itself rounds more:
- Score-CAM: pytorch-grad-cam's ScoreCAM weights through its own ``get_cam_image`` (its batch
  size 16, ours 5), before its min-max and resize; it rounds the masked-input scores to
  float32 before its softmax, so 1e-6. Plus independence from the batch size.
- RISE: a slow loop, one mask and one forward at a time, with scipy's linear zoom for the
  upsampling and the same seeded draws. Plus determinism by seed (not by the global generator,
  the batch size or the other images of the batch), and a model whose logit depends on one
  region only, where the map must peak.
- Integrated Gradients: Captum's IntegratedGradients with method="riemann_right" (the paper's
  sum; Captum rounds its step fractions to float32, which moves no gradient here), and a
  linear model, where IG is exactly x ⊙ w.
- SmoothGrad: Captum's NoiseTunnel(Saliency), nt_type="smoothgrad", one image at a time after
  ``torch.manual_seed(seed)``: its noise is then bit-identical to ours. Plus determinism by
  seed, and zero noise giving Captum's plain gradient map.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import scipy.ndimage
import torch
from torch import nn

from xiqa.errors import InputError
from xiqa.model.network import build_model
from xiqa.saliency import explain, explain_with_logits
from xiqa.saliency.probe import named_module


class TinyNet(nn.Module):
    """Two convolutions (the second with batch norm and an in-place ReLU), pooling, 2 logits."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 12, 3, stride=2, padding=1),
            nn.BatchNorm2d(12),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    torch.manual_seed(0)
    net = TinyNet()
    with torch.no_grad():  # non-trivial batch-norm statistics
        net(torch.randn(16, 3, 32, 40))
    return net.double().eval()


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18").double().eval()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two non-square images (H ≠ W catches swapped axes) with targets."""
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 32, 40, generator=generator, dtype=torch.float64)
    return images, torch.tensor([1, 0])


TOLERANCE = 1e-7


def relative_difference(ours: torch.Tensor, oracle) -> float:
    oracle = torch.as_tensor(np.asarray(oracle), dtype=torch.float64)
    assert oracle.abs().max() > 0  # a map to compare, not zeros
    return float((ours.double() - oracle).abs().max() / oracle.abs().max())


# --- Score-CAM ------------------------------------------------------------------------------


def pytorch_grad_cam_scorecam(model, images, targets, layer):
    """pytorch-grad-cam's Score-CAM at the layer's resolution, before its min-max and resize."""
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net = copy.deepcopy(model)
    module = named_module(net, layer)
    wanted = [ClassifierOutputTarget(int(t)) for t in targets]
    with ScoreCAM(model=net, target_layers=[module]) as cam:
        cam.activations_and_grads(images)  # its own capture of the activations
        activations = cam.activations_and_grads.activations[0].numpy()
        raw = cam.get_cam_image(images, module, wanted, activations, None, False)
    return torch.from_numpy(np.maximum(raw, 0))


def test_scorecam_equals_pytorch_grad_cam(tiny, batch):
    images, targets = batch
    ours = explain(tiny, images, targets, "scorecam", layer="features", batch_size=5)
    raw = pytorch_grad_cam_scorecam(tiny, images, targets, "features")
    oracle = torch.nn.functional.interpolate(
        raw[:, None], size=(32, 40), mode="bilinear", align_corners=False
    )[:, 0]
    assert relative_difference(ours, oracle) <= 1e-6


def test_scorecam_on_a_resnet_layer_equals_pytorch_grad_cam(resnet, batch):
    """The same on a residual block (in-place ReLUs, the skip connection), 64 channels."""
    images, targets = batch
    images, targets = images[:1, :, :16, :16], targets[:1]
    ours = explain(resnet, images, targets, "scorecam", layer="layer1.1", batch_size=24)
    raw = pytorch_grad_cam_scorecam(resnet, images, targets, "layer1.1")
    oracle = torch.nn.functional.interpolate(
        raw[:, None], size=(16, 16), mode="bilinear", align_corners=False
    )[:, 0]
    assert relative_difference(ours, oracle) <= 1e-6


def test_scorecam_does_not_depend_on_the_batch_size(tiny, batch):
    images, targets = batch
    one = explain(tiny, images, targets, "scorecam", layer="features", batch_size=1)
    many = explain(tiny, images, targets, "scorecam", layer="features", batch_size=1000)
    torch.testing.assert_close(one, many, rtol=1e-6, atol=0)


# --- RISE -------------------------------------------------------------------------------------


def slow_rise(model, image, target, n_masks, grid, p, seed) -> np.ndarray:
    """RISE for one image by the paper's recipe, one mask and one forward at a time, the
    upsampling by scipy (linear, edges replicated). The grids and shifts are the same draws."""
    generator = torch.Generator().manual_seed(seed)
    grids = (torch.rand(n_masks, grid, grid, generator=generator) < p).double().numpy()
    height, width = image.shape[-2:]
    cell = (math.ceil(height / grid), math.ceil(width / grid))
    dy = torch.randint(0, cell[0], (n_masks,), generator=generator).tolist()
    dx = torch.randint(0, cell[1], (n_masks,), generator=generator).tolist()
    zoom = ((grid + 1) * cell[0] / grid, (grid + 1) * cell[1] / grid)
    total = np.zeros((height, width))
    for i in range(n_masks):
        upsampled = scipy.ndimage.zoom(grids[i], zoom, order=1, mode="nearest", grid_mode=True)
        mask = upsampled[dy[i] : dy[i] + height, dx[i] : dx[i] + width]
        with torch.no_grad():
            logits = model(image[None] * torch.from_numpy(mask))
        total += float(logits.softmax(1)[0, target]) * mask
    return total / (n_masks * p)


def test_rise_equals_a_loop_over_masks(tiny, batch):
    images, targets = batch
    params = {"n_masks": 24, "grid": 5, "p": 0.4, "seed": 7}
    ours = explain(tiny, images, targets, "rise", batch_size=7, **params)  # chunks span images
    oracle = np.stack(
        [slow_rise(tiny, images[i], int(targets[i]), **params) for i in range(len(images))]
    )
    assert relative_difference(ours, oracle) <= TOLERANCE


def test_rise_is_determined_by_its_seed(tiny, batch):
    images, targets = batch
    params = {"n_masks": 30, "grid": 4, "p": 0.5}
    torch.manual_seed(100)  # the global generator plays no part
    first = explain(tiny, images, targets, "rise", seed=3, batch_size=8, **params)
    torch.manual_seed(200)
    again = explain(tiny, images, targets, "rise", seed=3, batch_size=64, **params)
    alone = explain(tiny, images[1:2], targets[1:2], "rise", seed=3, **params)
    other = explain(tiny, images, targets, "rise", seed=4, batch_size=8, **params)
    torch.testing.assert_close(first, again, rtol=1e-6, atol=0)
    torch.testing.assert_close(first[1:2], alone, rtol=1e-6, atol=0)  # the batch plays no part
    assert (first - other).abs().max() > 1e-3 * first.abs().max()


class RegionModel(nn.Module):
    """logit₁ − logit₀ = 20 × (the input's mean over rows 4–11, columns 20–27 − 0.5): on an
    image of ones, P(class 1) goes from about 0 to 1 as a mask keeps more of the region."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        region = x[:, :, 4:12, 20:28].mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(region), 20 * (region - 0.5)], 1)


def test_rise_peaks_on_the_only_region_the_model_reads():
    """Keeping the region raises P(class 1) and lowers P(class 0): the class-1 map must peak
    inside the region and the class-0 map must have its minimum there."""
    images = torch.ones(2, 3, 32, 32, dtype=torch.float64)
    maps = explain(RegionModel(), images, [1, 0], "rise", n_masks=200, grid=4, seed=0)
    peak = divmod(int(maps[0].argmax()), 32)
    low = divmod(int(maps[1].argmin()), 32)
    for y, x in (peak, low):
        assert 4 <= y < 12 and 20 <= x < 28, (peak, low)


# --- Integrated Gradients ---------------------------------------------------------------------


def test_integrated_gradients_equals_captum(resnet, batch):
    from captum.attr import IntegratedGradients

    images, targets = batch
    ours = explain(resnet, images, targets, "integrated-gradients", n_steps=6, batch_size=5)
    oracle = IntegratedGradients(resnet).attribute(
        images, target=targets.tolist(), n_steps=6, method="riemann_right"
    )
    assert relative_difference(ours, oracle.abs().sum(1)) <= TOLERANCE


class LinearScore(nn.Module):
    """logit₁ = −logit₀ = Σ w ⊙ x."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x * self.weight).sum(dim=(1, 2, 3))
        return torch.stack([-score, score], 1)


def test_integrated_gradients_of_a_linear_model_is_input_times_weight():
    """A constant gradient w: IG from zero is x ⊙ w exactly, for any number of steps."""
    generator = torch.Generator().manual_seed(5)
    weight = torch.randn(3, 8, 8, generator=generator, dtype=torch.float64)
    images = torch.randn(2, 3, 8, 8, generator=generator, dtype=torch.float64)
    maps = explain(LinearScore(weight), images, [1, 0], "integrated-gradients", n_steps=3)
    torch.testing.assert_close(maps.double(), (images * weight).abs().sum(1), rtol=1e-6, atol=0)


# --- SmoothGrad -------------------------------------------------------------------------------


def test_smoothgrad_equals_captum_noise_tunnel(resnet, batch):
    from captum.attr import NoiseTunnel, Saliency

    images, targets = batch
    n_samples, stdev, seed = 5, 0.2, 11
    params = {"n_samples": n_samples, "stdev": stdev, "seed": seed, "batch_size": 4}
    ours = explain(resnet, images, targets, "smoothgrad", **params)
    oracle = []
    for image, target in zip(images, targets, strict=True):
        sigma = stdev * float(image.max() - image.min())  # the paper's noise level
        torch.manual_seed(seed)  # Captum draws from the global generator: the same normals
        attribution = NoiseTunnel(Saliency(resnet)).attribute(
            image[None],
            nt_type="smoothgrad",
            nt_samples=n_samples,
            stdevs=sigma,
            target=int(target),
        )
        oracle.append(attribution[0].sum(0))  # Saliency's |gradient|, summed over channels
    assert relative_difference(ours, torch.stack(oracle)) <= TOLERANCE


def test_smoothgrad_is_determined_by_its_seed(resnet, batch):
    images, targets = batch
    torch.manual_seed(100)
    first = explain(resnet, images, targets, "smoothgrad", n_samples=3, seed=1, batch_size=2)
    torch.manual_seed(200)
    again = explain(resnet, images, targets, "smoothgrad", n_samples=3, seed=1, batch_size=16)
    alone = explain(resnet, images[1:], targets[1:], "smoothgrad", n_samples=3, seed=1)
    other = explain(resnet, images, targets, "smoothgrad", n_samples=3, seed=2, batch_size=2)
    torch.testing.assert_close(first, again, rtol=1e-6, atol=0)
    torch.testing.assert_close(first[1:], alone, rtol=1e-6, atol=0)
    assert (first - other).abs().max() > 1e-3 * first.abs().max()


def test_smoothgrad_without_noise_is_the_gradient_map(resnet, batch):
    from captum.attr import Saliency

    images, targets = batch
    ours = explain(resnet, images, targets, "smoothgrad", n_samples=2, stdev=0.0)
    oracle = Saliency(resnet).attribute(images, target=targets.tolist()).sum(1)
    assert relative_difference(ours, oracle) <= TOLERANCE


# --- parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "params", "message"),
    [
        ("rise", {"p": 0}, "rise parameter 'p' must be a probability in \\(0, 1\\], not 0"),
        ("rise", {"n_masks": 0}, "rise parameter 'n_masks' must be an integer ≥ 1, not 0"),
        ("rise", {"grid": 2.5}, "rise parameter 'grid' must be an integer ≥ 1, not 2.5"),
        ("scorecam", {"batch_size": "8"}, "'batch_size' must be an integer ≥ 1, not '8'"),
        ("integrated-gradients", {"n_steps": True}, "'n_steps' must be an integer ≥ 1"),
        ("smoothgrad", {"stdev": -0.1}, "'stdev' must be a number ≥ 0, not -0.1"),
        ("smoothgrad", {"seed": -1}, "'seed' must be an integer ≥ 0, not -1"),
        ("scorecam", {"layer": "head.9"}, "unknown layer 'head.9'"),
        ("rise", {"cell": 7}, "takes no parameter 'cell'"),
    ],
)
def test_bad_parameters_are_errors_naming_them(tiny, batch, family, params, message):
    images, targets = batch
    with pytest.raises(InputError, match=message):
        explain_with_logits(tiny, images, targets, family, **params)
