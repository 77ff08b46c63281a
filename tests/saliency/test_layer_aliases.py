"""Layer aliases in method entries: every family that probes a layer runs at them on a
DenseNet and an EfficientNet; on ResNet-18 an alias gives exactly the map of the module it
names; bad aliases and layers without a feature map are one error naming the method, or the
config key, and the parameter."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xiqa.config import check_methods
from xiqa.errors import InputError
from xiqa.model.network import build_model
from xiqa.saliency import FAMILIES, PAPER_METHODS, PRESETS, explain, resolve_method

SIZE = 64
RESNET18_COMBINED = ["layer2.0", "layer3.0", "layer4.0", "layer4.1"]
LAYER_FAMILIES = sorted(name for name, family in FAMILIES.items() if family.takes_layers)


def test_the_families_that_take_layers_are_the_normgrad_and_cam_ones():
    assert LAYER_FAMILIES == [
        "gradcam",
        "gradcam-plusplus",
        "guided-gradcam",
        "hirescam",
        "layercam",
        "normgrad",
        "scorecam",
        "xgradcam",
    ]


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {arch: build_model(arch).eval() for arch in ("efficientnet_b0", "densenet121")}


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))


def alias_entries(family: str) -> list[dict]:
    if family == "normgrad":
        return [
            {"virtual_layer": virtual, "layers": layers}
            for virtual in ("bias", "scaling", "selective", "conv1x1", "conv3x3")
            for layers in (["combined"], ["last"])
        ]
    return [{"layer": "last", **({"batch_size": 256} if family == "scorecam" else {})}]


@pytest.mark.parametrize("arch", ["efficientnet_b0", "densenet121"])
@pytest.mark.parametrize(
    "family",
    [  # Score-CAM: one forward per channel of the last layer (1280 and 1024 of them)
        pytest.param(f, marks=pytest.mark.slow) if f == "scorecam" else f for f in LAYER_FAMILIES
    ],
)
def test_every_layer_family_runs_at_the_aliases(models, image, arch, family):
    model = models[arch]
    for params in alias_entries(family):
        maps = explain(model, image, torch.tensor([1]), family, **params)
        assert maps.shape == (1, SIZE, SIZE) and maps.dtype == torch.float32, params
        assert torch.isfinite(maps).all(), params


def test_the_presets_run_on_an_efficientnet_and_a_densenet(models, image):
    """The paper's presets do; the midl2021 ones reproduce the authors' ResNet code, whose
    Grad-CAM hook needs a BasicBlock: one error naming the method and the layer."""
    for model in models.values():
        for name in PAPER_METHODS:
            if FAMILIES[PRESETS[name]["family"]].takes_layers:
                maps = explain(model, image, torch.tensor([1]), name)
                assert maps.shape == (1, SIZE, SIZE) and torch.isfinite(maps).all(), name
    with pytest.raises(InputError, match="^method 'midl2021-gradcam': layer 'features.8' is not"):
        explain(models["efficientnet_b0"], image, torch.tensor([1]), "midl2021-gradcam")


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18").eval()


@pytest.mark.parametrize(
    ("family", "alias", "concrete"),
    [
        ("normgrad", {"layers": ["combined"]}, {"layers": RESNET18_COMBINED}),
        ("normgrad", {"layers": ["last"]}, {"layers": ["layer4.1"]}),
        ("normgrad", {"layers": ["layer1.0", "last"]}, {"layers": ["layer1.0", "layer4.1"]}),
        ("gradcam", {"layer": "last"}, {"layer": "layer4.1"}),
        ("gradcam", {}, {"layer": "layer4.1"}),  # the default layer is the alias
        ("guided-gradcam", {"layer": "last"}, {"layer": "layer4.1"}),
        ("layercam", {"layer": "last"}, {"layer": "layer4.1"}),
    ],
)
def test_an_alias_gives_the_map_of_the_module_it_names(resnet18, family, alias, concrete):
    images = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    targets = torch.tensor([1, 0])
    by_alias = explain(resnet18, images, targets, family, **alias)
    by_name = explain(resnet18, images, targets, family, **concrete)
    assert torch.equal(by_alias, by_name)
    assert by_alias.abs().max() > 0
    _, params = resolve_method("m", {"family": family, **alias})
    assert FAMILIES[family].resolve_layers("m", resnet18, params) == concrete


def test_the_paper_presets_resolve_to_the_papers_resnet34_layers():
    with torch.device("meta"):
        resnet34 = build_model("resnet34")
    combined = ["layer2.0", "layer3.0", "layer4.0", "layer4.2"]
    for name in ("normgrad-conv1x1-combined", "midl2021-normgrad-bias-combined"):
        family, params = resolve_method(name)
        assert FAMILIES[family].resolve_layers(name, resnet34, params)["layers"] == combined
    for name in ("normgrad-scaling-single", "gradcam", "midl2021-guided-gradcam"):
        family, params = resolve_method(name)
        resolved = FAMILIES[family].resolve_layers(name, resnet34, params)
        assert resolved.get("layer", resolved.get("layers", [None])[0]) == "layer4.2", name
    # Concrete names stay as given, a tuple a tuple.
    params = {"layers": ("layer3.1", "layer4.0")}
    assert FAMILIES["normgrad"].resolve_layers("m", resnet34, params)["layers"] == params["layers"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"family": "gradcam", "layer": "combined"},
            "method 'm': 'combined' names 4 layers (layer2.0, layer3.0, layer4.0, layer4.1): "
            "this parameter takes one",
        ),
        ({"family": "gradcam", "layer": "lastt"}, "method 'm': unknown layer 'lastt'; valid"),
        ({"family": "normgrad", "layers": ["combined", "last"]}, "'layer4.1' is named more than"),
    ],
)
def test_a_bad_alias_is_one_error_naming_method_and_parameter(resnet18, entry, message):
    with pytest.raises(InputError) as caught:
        explain(resnet18, torch.zeros(1, 3, SIZE, SIZE), torch.tensor([1]), "m", **entry)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.parameter == ("layer" if "layer" in entry else "layers")
    assert str(caught.value).endswith("or an alias: last, combined") == ("lastt" in message)


def test_an_alias_on_a_model_without_a_rule_names_the_parameter():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    with pytest.raises(InputError, match="^method 'mine': no layer aliases .* for a Sequential"):
        explain(model, torch.zeros(1, 3, 8, 8), torch.tensor([1]), "mine", family="gradcam")
    maps = explain(model, torch.zeros(1, 3, 8, 8), torch.tensor([1]), "gradcam", layer="0")
    assert maps.shape == (1, 8, 8)  # concrete names need no rule


def test_a_layer_without_a_feature_map_is_one_error_naming_method_and_layer(resnet18):
    image, target = torch.zeros(1, 3, SIZE, SIZE), torch.tensor([1])
    for family, params in (("normgrad", {"layers": ["fc"]}), ("gradcam", {"layer": "fc"})):
        with pytest.raises(InputError) as caught:
            explain(resnet18, image, target, "m", family=family, **params)
        assert str(caught.value) == (
            "method 'm': layer 'fc' gives (1, 2), not a feature map (N, C, h, w) that a layer's "
            "map (NormGrad's virtual layers, the CAMs) can be taken at"
        )


@pytest.mark.parametrize(
    ("arch", "entry", "message"),
    [
        (
            "resnet18",
            {"family": "gradcam", "layer": "lastt"},
            "config key methods.m.layer: unknown layer 'lastt'; valid layers include: conv1, ",
        ),
        ("resnet34", {"family": "hirescam", "layer": "combined"}, "config key methods.m.layer: "),
        (
            "efficientnet_b0",
            {"family": "normgrad", "layers": ["last", "classifier.1"]},
            "config key methods.m.layers: NormGrad: layer 'classifier.1' gives (1, 2), not a",
        ),
        (
            "densenet121",
            {"family": "scorecam", "layer": "classifier"},
            "config key methods.m.layer: Score-CAM: layer ",
        ),
    ],
)
def test_the_config_check_refuses_a_bad_alias_or_layer_in_one_line(arch, entry, message):
    with pytest.raises(InputError) as caught:
        check_methods({"m": entry}, arch)
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "arch", ["resnet18", "densenet121", "efficientnet_b0", "efficientnet_v2_s"]
)
def test_the_config_check_resolves_aliases_on_every_kind_of_architecture(arch):
    check_methods(
        {name: dict(entry) for name, entry in PRESETS.items() if "midl" not in name}, arch
    )
