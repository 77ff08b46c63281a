"""The layer aliases per architecture (xiqa.model.network.layer_aliases) and the EfficientNet
head; every model is built on the meta device (the module tree and shapes only, no weights)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xiqa.errors import InputError
from xiqa.model.network import architectures, build_model, classifier_head, layer_aliases


def meta_model(arch: str) -> nn.Module:
    with torch.device("meta"):
        return build_model(arch).eval()


RESNET_FIRSTS = ["layer2.0", "layer3.0", "layer4.0"]
DENSENET_FIRSTS = [f"features.denseblock{k}.denselayer1" for k in (2, 3, 4)]
EFFICIENTNET_FIRSTS = ["features.3.0", "features.4.0", "features.6.0"]
# Written out by hand from torchvision's module trees (docs/protocol.md §3).
EXPECTED = {
    "resnet18": "layer4.1",
    "resnet34": "layer4.2",
    "resnet50": "layer4.2",
    "resnet152": "layer4.2",
    "resnext50_32x4d": "layer4.2",
    "wide_resnet50_2": "layer4.2",
    "densenet121": "features.norm5",
    "densenet201": "features.norm5",
    "efficientnet_b0": "features.8",
    "efficientnet_b7": "features.8",
    "efficientnet_v2_s": "features.7",
    "efficientnet_v2_l": "features.8",
}


@pytest.mark.parametrize("arch", sorted(EXPECTED))
def test_aliases_name_the_hand_written_modules(arch):
    last = EXPECTED[arch]
    firsts = {"res": RESNET_FIRSTS, "wid": RESNET_FIRSTS, "den": DENSENET_FIRSTS}.get(
        arch[:3], EFFICIENTNET_FIRSTS
    )
    assert layer_aliases(meta_model(arch)) == {"last": [last], "combined": [*firsts, last]}


@pytest.mark.parametrize("arch", architectures())
def test_combined_spans_strides_8_16_32_and_last_feeds_the_pooling(arch):
    """For every architecture: ``combined`` is at output strides 8, 16, 32 and 32, and
    ``last``'s output is the very tensor the head pools (DenseNet: the output of ``features``,
    before its functional ReLU and pooling)."""
    model = meta_model(arch)
    aliases = layer_aliases(model)
    modules = dict(model.named_modules())
    outputs, pooled = {}, []

    def keep(name):
        return lambda module, inputs, output: outputs.setdefault(name, output)

    hooks = [modules[name].register_forward_hook(keep(name)) for name in aliases["combined"]]
    if arch.startswith("densenet"):
        hooks.append(model.features.register_forward_hook(lambda m, i, o: pooled.append(o)))
    else:
        hooks.append(model.avgpool.register_forward_hook(lambda m, i, o: pooled.append(i[0])))
    with torch.no_grad():
        model(torch.empty(1, 3, 256, 256, device="meta"))
    for hook in hooks:
        hook.remove()
    assert [256 // outputs[name].shape[-1] for name in aliases["combined"]] == [8, 16, 32, 32]
    assert outputs[aliases["last"][0]] is pooled[0]


def test_efficientnet_gets_a_two_way_head_after_its_dropout():
    model = build_model("efficientnet_b0").eval()
    assert isinstance(model.classifier[0], nn.Dropout)
    assert classifier_head(model) is model.classifier[1]
    assert (classifier_head(model).in_features, classifier_head(model).out_features) == (1280, 2)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 2)
    for arch, head in (("resnet18", "fc"), ("densenet121", "classifier")):
        model = meta_model(arch)
        assert classifier_head(model) is getattr(model, head)
        assert classifier_head(model).out_features == 2


def test_a_model_without_a_rule_has_no_aliases():
    with pytest.raises(InputError, match=r"^no layer aliases \(last, combined\) for a Sequential"):
        layer_aliases(nn.Sequential(nn.Conv2d(3, 4, 3)))
