"""The registry: every family's entry matches its function, and every bad parameter value is
one clear error naming the method and the parameter, before any pass (or, for a config, the key).
"""

from __future__ import annotations

import inspect

import pytest

from xiqa.config import check_methods
from xiqa.errors import InputError
from xiqa.saliency import FAMILIES, resolve_method
from xiqa.saliency.registry import KINDS, ParameterError


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_entry_has_a_label_a_kind_and_the_functions_parameters(name):
    entry = FAMILIES[name]
    assert isinstance(entry.label, str) and entry.label
    assert entry.kind in KINDS
    signature = list(inspect.signature(entry.function).parameters.values())
    assert [p.name for p in signature[:3]] == ["model", "images", "targets"]
    keywords = signature[3:]
    assert all(p.default is not inspect.Parameter.empty for p in keywords)
    assert list(entry.params) == [p.name for p in keywords]
    for parameter, default in entry.defaults.items():
        assert entry.params[parameter].accepts(default), (parameter, default)


def test_labels_and_panels_are_those_the_tables_and_figures_printed():
    assert {name: entry.label for name, entry in FAMILIES.items()} == {
        "normgrad": "NormGrad",
        "gradcam": "Grad-CAM",
        "guided-gradcam": "Guided Grad-CAM",
        "guided-backprop": "Guided BP",
        "input-x-gradient": "Input×Grad",
        "gradcam-plusplus": "Grad-CAM++",
        "xgradcam": "XGrad-CAM",
        "layercam": "LayerCAM",
        "hirescam": "HiResCAM",
        "scorecam": "Score-CAM",
        "rise": "RISE",
        "integrated-gradients": "Integrated Gradients",
        "smoothgrad": "SmoothGrad",
    }
    cams = {name for name, entry in FAMILIES.items() if entry.kind == "cam"}
    assert cams == {"gradcam", "gradcam-plusplus", "xgradcam", "layercam", "hirescam", "scorecam"}
    assert [name for name, entry in FAMILIES.items() if entry.kind == "normgrad"] == ["normgrad"]


BAD_VALUES = [
    (
        "normgrad",
        "virtual_layer",
        "conv5x5",
        "unknown NormGrad virtual_layer 'conv5x5'; "
        "choose bias, scaling, selective, conv1x1 or conv3x3",
    ),
    ("normgrad", "layers", "layer4.2", "must be a non-empty list of layer names, not 'layer4.2'"),
    ("normgrad", "layers", [], "must be a non-empty list of layer names, not []"),
    ("normgrad", "layers", ["layer4.2", 3], "must be a non-empty list of layer names"),
    ("gradcam", "layer", 3, "gradcam parameter 'layer' must be a layer name such as 'layer4.2'"),
    ("scorecam", "layer", "", "scorecam parameter 'layer' must be a layer name"),
    ("rise", "n_masks", 0, "rise parameter 'n_masks' must be an integer ≥ 1, not 0"),
    ("rise", "n_masks", 2.0, "rise parameter 'n_masks' must be an integer ≥ 1, not 2.0"),
    ("rise", "grid", 0, "rise parameter 'grid' must be an integer ≥ 1, not 0"),
    ("rise", "p", 2, "rise parameter 'p' must be a probability in (0, 1], not 2"),
    ("rise", "p", 0, "rise parameter 'p' must be a probability in (0, 1], not 0"),
    ("rise", "p", True, "rise parameter 'p' must be a probability in (0, 1], not True"),
    ("rise", "p", "0.5", "rise parameter 'p' must be a probability in (0, 1], not '0.5'"),
    ("rise", "seed", -1, "rise parameter 'seed' must be an integer ≥ 0, not -1"),
    ("rise", "batch_size", 0, "rise parameter 'batch_size' must be an integer ≥ 1, not 0"),
    ("smoothgrad", "stdev", -1, "smoothgrad parameter 'stdev' must be a number ≥ 0, not -1"),
    ("smoothgrad", "n_samples", 0, "smoothgrad parameter 'n_samples' must be an integer ≥ 1"),
    ("smoothgrad", "seed", 1.5, "smoothgrad parameter 'seed' must be an integer ≥ 0, not 1.5"),
    ("integrated-gradients", "n_steps", 0, "parameter 'n_steps' must be an integer ≥ 1, not 0"),
    ("scorecam", "batch_size", -2, "parameter 'batch_size' must be an integer ≥ 1, not -2"),
]


@pytest.mark.parametrize(("family", "parameter", "value", "reason"), BAD_VALUES)
def test_a_bad_value_is_one_error_naming_method_and_parameter(family, parameter, value, reason):
    with pytest.raises(ParameterError) as caught:
        resolve_method("mine", {"family": family, parameter: value})
    assert str(caught.value).startswith("method 'mine': ")
    assert reason in str(caught.value)
    assert caught.value.parameter == parameter
    assert isinstance(caught.value, InputError)


def test_values_at_the_edges_of_their_ranges_pass():
    rise = {"n_masks": 1, "grid": 1, "p": 1, "seed": 0, "batch_size": 1}
    assert resolve_method("r", {"family": "rise", **rise}) == ("rise", rise)
    assert resolve_method("r", {"family": "rise", "p": 1e-9})[1] == {"p": 1e-9}
    smooth = {"n_samples": 1, "stdev": 0, "seed": 0}
    assert resolve_method("s", {"family": "smoothgrad", **smooth}) == ("smoothgrad", smooth)
    for virtual in ("bias", "scaling", "selective", "conv1x1", "conv3x3"):
        entry = {"family": "normgrad", "virtual_layer": virtual, "layers": ("layer1.0",)}
        assert resolve_method("n", entry)[1] == {"virtual_layer": virtual, "layers": ("layer1.0",)}
    # A preset's own values are checked too, and an override replaces them.
    assert resolve_method("gradcam", {"layer": "layer3.1"}) == ("gradcam", {"layer": "layer3.1"})
    with pytest.raises(ParameterError, match="method 'gradcam': gradcam parameter 'layer'"):
        resolve_method("gradcam", {"layer": ["layer3.1"]})


def test_the_config_check_names_the_key_of_a_bad_value_or_layer():
    good = {"family": "normgrad", "virtual_layer": "bias", "layers": ["layer2.0", "layer4.1"]}
    check_methods({"ng": good, "ig": {"family": "integrated-gradients", "n_steps": 2}}, "resnet18")
    cases = [
        ({"family": "rise", "p": 2}, "resnet18", "config key methods.m.p: rise parameter 'p'"),
        ({"family": "gradcam", "layer": "layer9.9"}, "resnet18", "config key methods.m.layer: "),
        ({"family": "normgrad", "layers": ["layer4.2"]}, "resnet18", "config key methods.m.layers"),
        ({"family": "normgrad", "layers": ["layer4.2"]}, "resnet34", None),
    ]
    for entry, arch, message in cases:
        if message is None:
            check_methods({"m": entry}, arch)
            continue
        with pytest.raises(InputError) as caught:
            check_methods({"m": entry}, arch)
        assert str(caught.value).startswith(message), str(caught.value)
    with pytest.raises(InputError, match="^config key methods.m.layer: unknown layer 'layer9.9'"):
        check_methods({"m": {"family": "gradcam", "layer": "layer9.9"}}, "resnet18")
