"""The authors' MIDL 2021 deviations, each on a hand-worked case (docs/protocol.md §6), and the
``midl2021-*`` presets and audit variants built from them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xiqa.evaluation.pointing import peak
from xiqa.model.network import build_model
from xiqa.saliency import FAMILIES, PAPER_METHODS, PRESETS, audit_variants, explain
from xiqa.saliency.cam import gradcam_layer_map
from xiqa.saliency.maps import percentile_clip, uint8_lanczos_upsample
from xiqa.saliency.normgrad import combine_layer_maps
from xiqa.saliency.probe import target_score

# --- the 99th-percentile clip and the top-most tied peak -----------------------------------------


def test_p99_clip_on_a_10x10_map_by_hand():
    values = np.arange(100, dtype=np.float32).reshape(10, 10)  # distinct, lo = 0
    clipped = percentile_clip(torch.from_numpy(values)[None])[0].numpy()
    # np.percentile(0..99, 99) = 98 + 0.01 * (99 - 98) = 98.01: only 99 is above it.
    assert np.count_nonzero(clipped == 1) == 1 and clipped[9, 9] == 1
    np.testing.assert_allclose(clipped[9, 8], 98 / 98.01, rtol=1e-6)
    np.testing.assert_allclose(clipped[0, 5], 5 / 98.01, rtol=1e-6)


def test_p99_clip_ties_and_the_pointing_peak_is_the_top_most_tie():
    rng = np.random.default_rng(0)
    values = rng.permutation(400).astype(np.float32).reshape(20, 20)
    top = [(17, 3), (5, 12), (5, 2), (11, 0)]  # (row, column) of the four largest values
    for k, (row, col) in enumerate(top):
        other = np.argwhere(values == 396 + k)[0]
        values[tuple(other)], values[row, col] = values[row, col], 396 + k
    clipped = percentile_clip(torch.from_numpy(values)[None])[0].numpy()
    # p99 of 0..399 is 395.01: exactly 400 - floor(0.99 * 399) - 1 = 4 pixels tie at 1.
    assert sorted(map(tuple, np.argwhere(clipped == 1))) == sorted(top)
    x, y, ties = peak(clipped)
    assert (y, x, ties) == (5, 2, 4)  # the smallest row, then the smallest column
    x, y, ties = peak(values)  # unclipped, the true maximum (399 at (11, 0)) wins
    assert (y, x, ties) == (11, 0, 1)


@pytest.mark.parametrize("side, ties", [(128, 164), (600, 3600)])
def test_p99_clip_leaves_the_authors_tie_counts(side, ties):
    values = torch.randperm(side * side, generator=torch.Generator().manual_seed(1)).double()
    clipped = percentile_clip(values.view(1, side, side))
    assert int((clipped == 1).sum()) == ties == side * side - int(0.99 * (side * side - 1)) - 1


def test_p99_clip_of_a_flat_map_marks_what_is_above_the_percentile():
    flat = torch.zeros(1, 10, 10)
    flat[0, 3, 4] = 5.0  # the 99th percentile is 0 = the minimum: the authors' 0/0
    clipped = percentile_clip(flat)
    assert clipped[0, 3, 4] == 1 and clipped.sum() == 1


# --- targets -----------------------------------------------------------------------------------


class Linear(nn.Module):
    """logits = W · flatten(x): every gradient by hand."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        self.fc.weight.data = weight

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_target_rules_by_hand():
    logits = torch.tensor([[2.0, 5.0], [3.0, -1.0]])
    given = torch.tensor([0, 0])
    assert target_score(logits, given, "given") == 2 + 3
    assert target_score(logits, given, "predicted") == 5 + 3
    assert target_score(logits, given, "logit-sum") == 2 + 5 + 3 - 1


def test_logit_sum_and_first_channel_input_x_gradient_by_hand():
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(2, 3 * 2 * 2, generator=generator, dtype=torch.float64)
    model = Linear(weight).double()
    x = torch.randn(1, 3, 2, 2, generator=generator, dtype=torch.float64)
    w = weight.view(2, 3, 2, 2)
    label = torch.tensor([1])
    # Correct: the given logit's gradient is W[1]; the map is Σ_c |x_c W[1]_c|.
    ours = explain(model, x, label, "input-x-gradient")
    torch.testing.assert_close(ours, (x * w[1]).abs().sum(1).float())
    # logit0 + logit1: the gradient is W[0] + W[1], whatever the given target.
    summed = explain(model, x, label, "input-x-gradient", target="logit-sum")
    torch.testing.assert_close(summed, (x * (w[0] + w[1])).abs().sum(1).float())
    # Channel 0 of the gradient times every input channel: |g_R| Σ_c |x_c|.
    first = explain(model, x, label, "input-x-gradient", gradient_channels="first")
    torch.testing.assert_close(first, (w[1, 0] * x.abs().sum(1)).abs().float())


# --- Guided BP: the stem ReLU only against every ReLU ------------------------------------------


class TwoReLUs(nn.Module):
    """x (N, 3, 1, 1) → conv (1, 0, 0) → stem ReLU → block (1x1 conv to 2, ReLU) → M."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 1, 1, bias=False)
        self.conv1.weight.data = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
        self.relu = nn.ReLU()
        self.block = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.ReLU())
        self.block[0].weight.data = torch.ones(2, 1, 1, 1)
        self.head = nn.Linear(2, 2, bias=False)
        self.head.weight.data = torch.tensor([[2.0, -3.0], [1.0, 1.0]])

    def forward(self, x):
        return self.head(self.block(self.relu(self.conv1(x))).flatten(1))


def test_guided_backprop_stem_only_against_every_relu_by_hand():
    model, x, target = TwoReLUs(), torch.ones(1, 3, 1, 1), torch.tensor([0])
    # h = relu(x_R) = 1, u = relu((1, 1) h) = (1, 1), logit0 = 2 u_1 - 3 u_2.
    # Plain gradient: dL/dh = 2 - 3 = -1, so dL/dx = (-1, 0, 0).
    # Every ReLU guided: dL/du = (max(2, 0), max(-3, 0)) = (2, 0); dL/dh = 2; dL/dx = (2, 0, 0).
    # Stem only: dL/dh = -1 unguided, then the stem passes max(-1, 0) = 0: dL/dx = 0.
    assert explain(model, x, target, "guided-backprop").item() == 2
    assert explain(model, x, target, "guided-backprop", guide="stem").item() == 0
    assert explain(model, x, target, "input-x-gradient").item() == 1
    # Positive part: of (2, 0, 0) it is 2; the abs-sum of the plain gradient would be 1.
    assert explain(model, x, target, "guided-backprop", reduce="positive-sum").item() == 2


# --- Grad-CAM: offset, uint8 and Lanczos, the block without its residual ------------------------


def test_gradcam_offset_of_ones_by_hand():
    a = torch.tensor([[[[1.0, -4.0, 2.0]], [[-1.0, 0.0, 1.0]]]])  # (1, C=2, 1, 3)
    g = torch.tensor([[[[0.5, 0.5, 0.5]], [[1.5, 1.5, 1.5]]]])  # weights 0.5 and 1.5
    # Σ_k w_k A_k = (0.5 - 1.5, -2 + 0, 1 + 1.5) = (-1, -2, 2.5)
    torch.testing.assert_close(gradcam_layer_map(a, g), torch.tensor([[[0.0, 0.0, 2.5]]]))
    torch.testing.assert_close(gradcam_layer_map(a, g, 1.0), torch.tensor([[[0.0, 0.0, 3.5]]]))
    torch.testing.assert_close(gradcam_layer_map(a, g, 1.5), torch.tensor([[[0.5, 0.0, 4.0]]]))


def test_uint8_lanczos_truncates_to_levels_of_1_over_255():
    cam = torch.tensor([[[0.0, 1.0], [2.0, 4.0]]])  # min–max: 0, 0.25, 0.5, 1
    same = uint8_lanczos_upsample(cam, (2, 2))  # no resampling at the same size
    expected = np.array([[0, 63], [127, 255]]) / 255  # 63.75 and 127.5 truncate
    np.testing.assert_allclose(same[0].numpy(), expected, rtol=1e-6)
    big = uint8_lanczos_upsample(torch.full((1, 3, 3), 7.0), (12, 12))
    assert big.shape == (1, 12, 12) and bool((big == 1).all())  # constant: the authors' 0/0
    levels = uint8_lanczos_upsample(torch.rand(2, 4, 4), (32, 32)) * 255
    assert torch.allclose(levels, levels.round(), atol=1e-4) and levels.max() <= 255


def tiny_resnet() -> nn.Module:
    torch.manual_seed(0)
    net = build_model("resnet18").eval()
    with torch.no_grad():  # non-trivial BN statistics
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return net


def authors_gradcam(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The authors' hook_resnet and generate_cam, step by step as in their code
    (reference gradcam.py:42-64, 159-193): the stem and layers 1-3, layer4's first block,
    its last block part by part (no residual, no final ReLU), the hook on conv2's output,
    avgpool, fc; the predicted class; cam = 1 + Σ w_k A_k, ReLU."""
    h = x
    for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"):
        h = getattr(net, name)(h)
    h = net.layer4[0](h)
    block = net.layer4[1]
    a = block.conv2(block.relu(block.bn1(block.conv1(h))))
    a.retain_grad()
    logits = net.fc(torch.flatten(net.avgpool(block.bn2(a)), 1))
    pred = int(logits.argmax(1))
    logits[0, pred].backward()
    weights = a.grad[0].mean(dim=(1, 2))
    cam = torch.ones(a.shape[-2:], dtype=a.dtype)
    for k in range(a.shape[1]):
        cam += weights[k] * a[0, k].detach()
    return cam.clamp(min=0), pred


def test_gradcam_without_residual_matches_the_authors_forward():
    net = tiny_resnet()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    cam, pred = authors_gradcam(net, x)
    entry = dict(PRESETS["midl2021-gradcam"], layer="layer4.1")
    params = {k: v for k, v in entry.items() if k not in ("family", "upsampling")}
    wrong = torch.tensor([1 - pred])  # ignored: the authors take their own network's argmax
    ours = explain(net, x, wrong, "gradcam", **params, upsampling="bilinear")
    expected = torch.nn.functional.interpolate(
        cam[None, None], size=(64, 64), mode="bilinear", align_corners=False
    )[0]
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    full = explain(net, x, wrong, "midl2021-gradcam", layer="layer4.1")
    scaled = (cam - cam.min()) / (cam.max() - cam.min())
    levels = (scaled.float() * 255).to(torch.uint8).numpy()
    from PIL import Image

    pil = np.asarray(Image.fromarray(levels).resize((64, 64), Image.LANCZOS)) / 255
    assert np.mean(np.abs(full[0].numpy() - pil) > 1.5 / 255) == 0  # a level at most


def test_gradcam_without_residual_needs_a_basic_block():
    net = tiny_resnet()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(Exception, match="BasicBlock"):
        explain(net, x, torch.tensor([1]), "gradcam", layer="layer4", hook="conv2-without-residual")


# --- NormGrad: the plain product --------------------------------------------------------------


def test_normgrad_product_by_hand():
    first = torch.tensor([[[0.0, 1.0], [2.0, 4.0]]])  # min–max: 0, 0.25, 0.5, 1
    second = torch.tensor([[[3.0, 3.0], [1.0, 5.0]]])  # 0.5, 0.5, 0, 1
    product = combine_layer_maps([first, second], (2, 2), "product")
    torch.testing.assert_close(product, torch.tensor([[[0.0, 0.125], [0.0, 1.0]]]))
    mean = combine_layer_maps([first, second], (2, 2))
    torch.testing.assert_close(mean, product.sqrt())  # same order, same arg-max
    # One layer: the product min–max scales it (the geometric mean keeps it raw); a constant
    # layer (NormGrad bias at the last block) scales to ones, so every pixel ties.
    single = combine_layer_maps([first], (2, 2), "product")
    torch.testing.assert_close(single, torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))
    constant = combine_layer_maps([torch.full((1, 2, 2), 0.3)], (4, 4), "product")
    assert bool((constant == 1).all())


# --- presets and audit variants -----------------------------------------------------------------


def test_midl2021_presets_are_every_deviation_of_the_paper_method():
    for name in PAPER_METHODS:
        base, authors = PRESETS[name], PRESETS[f"midl2021-{name}"]
        family = FAMILIES[base["family"]]
        expected = dict(base)
        for deviation in family.deviations.values():
            expected.update(deviation.overrides)
        assert authors == expected and authors != base, name


def test_audit_variants_switch_each_deviation_alone():
    entry = {"family": "gradcam", "layer": "layer4.1"}
    variants = audit_variants(entry)
    assert list(variants) == ["correct", "target", "hook", "offset", "upsampling", "all"]
    assert variants["correct"] == entry
    assert variants["offset"] == {**entry, "offset": 1.0}
    assert variants["all"] == {**PRESETS["midl2021-gradcam"], "layer": "layer4.1"}
    assert audit_variants({"family": "scorecam", "layer": "layer4.1"}) == {}
    for name, deviation in FAMILIES["guided-gradcam"].deviations.items():
        assert deviation.step.startswith("§6"), name
