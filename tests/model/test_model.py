"""Building, loading and checkpointing the classifier."""

from __future__ import annotations

import pytest
import torch
import torchvision

from xiqa.errors import InputError
from xiqa.model.network import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    architectures,
    build_model,
    load_model,
    read_checkpoint,
    save_model,
    to_model_input,
)

from conftest import assert_one_line_error, run_cli


def test_architectures_get_a_two_way_head():
    assert {"resnet18", "resnet34", "densenet121"} <= set(architectures())
    x = torch.randn(2, 3, 64, 64)
    for arch in ("resnet18", "densenet121"):
        model = build_model(arch).eval()
        assert model(x).shape == (2, 2)


def test_unknown_architecture_lists_the_choices():
    with pytest.raises(InputError, match="unknown architecture 'vgg16'; choose one of: .*resnet34"):
        build_model("vgg16")


def test_imagenet_weights_offline_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(InputError) as error:
        build_model("resnet18", "imagenet")
    message = str(error.value)
    assert "not in the local torch cache" in message and str(tmp_path) in message
    assert "--pretrained /path/to/weights.pth" in message and "\n" not in message


def test_imagenet_weights_from_the_local_cache_and_from_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.resnet18()
    from xiqa.model.network import imagenet_weights_path

    path = imagenet_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    for source in ("imagenet", str(path)):
        model = build_model("resnet18", source)
        torch.testing.assert_close(model.conv1.weight, reference.conv1.weight)
        assert model.fc.out_features == 2
    with pytest.raises(InputError, match="not resnet34 weights"):
        build_model("resnet34", str(path))


def test_input_transform_by_hand():
    grey = torch.tensor([[[0, 255]]], dtype=torch.uint8)
    x = to_model_input(grey)
    assert x.shape == (1, 3, 1, 2)
    for c in range(3):
        assert x[0, c, 0, 0].item() == pytest.approx(-IMAGENET_MEAN[c] / IMAGENET_STD[c])
        assert x[0, c, 0, 1].item() == pytest.approx((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c])


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18").eval()
    save_model(tmp_path / "m.pt", model, {"arch": "resnet18", "image_size": 32, "epoch": 3})
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["arch"] == "resnet18" and raw["image_size"] == 32
    assert raw["mean"] == list(IMAGENET_MEAN) and raw["std"] == list(IMAGENET_STD)
    loaded, meta = load_model(tmp_path / "m.pt")
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model(x))
    assert meta["epoch"] == 3 and "state_dict" not in meta


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_with_pickled_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format": "xiqa-model/1", "payload": _Exploit(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="evil.pt: not a loadable xiqa checkpoint"):
        read_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(InputError, match="not an xiqa model checkpoint"):
        read_checkpoint(tmp_path / "foreign.pt")


def test_checkpoint_whose_weights_do_not_fit_its_architecture(tmp_path):
    save_model(tmp_path / "m.pt", build_model("resnet18"), {"arch": "resnet34", "image_size": 32})
    with pytest.raises(InputError, match="weights do not fit architecture 'resnet34'"):
        load_model(tmp_path / "m.pt")


def test_train_command_with_unknown_arch_or_offline_imagenet(tiny_caches, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    base = [
        "train",
        "--train",
        tiny_caches["train"],
        "--val",
        tiny_caches["val"],
        "--device",
        "cpu",
    ]
    result = run_cli(*base, "--out", tmp_path / "a", "--arch", "alexnet9")
    assert_one_line_error(result, "unknown architecture 'alexnet9'")
    result = run_cli(
        *base, "--out", tmp_path / "b", "--pretrained", "imagenet", "--arch", "resnet18"
    )
    assert_one_line_error(result, "ImageNet weights for resnet18", "--pretrained")
    assert not (tmp_path / "b" / "model.pt").exists()
