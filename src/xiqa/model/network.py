"""The classifier: a torchvision ResNet, DenseNet or EfficientNet with a two-way head, its input
transform, the layer aliases a method entry may name instead of modules, and checkpoints that
load with ``torch.load(..., weights_only=True)``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from xiqa import __version__
from xiqa.errors import InputError
from xiqa.io import atomic_output

CHECKPOINT_FORMAT = "xiqa-model/1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def architectures() -> list[str]:
    """The torchvision classification models xiqa can use: ResNets (incl. ResNeXt, wide),
    DenseNets and EfficientNets (B0-B7, V2)."""
    return [
        name
        for name in torchvision.models.list_models(module=torchvision.models)
        if name.startswith(("resnet", "resnext", "wide_resnet", "densenet", "efficientnet"))
    ]


def classifier_head(model: nn.Module) -> nn.Linear:
    """The final linear layer: ResNet's ``fc``, DenseNet's ``classifier``, the last module of
    EfficientNet's ``classifier`` (Dropout, Linear)."""
    head = model.fc if hasattr(model, "fc") else model.classifier
    return head[-1] if isinstance(head, nn.Sequential) else head


def _replace_head(model: nn.Module, classes: int) -> None:
    head = nn.Linear(classifier_head(model).in_features, classes)
    if hasattr(model, "fc"):
        model.fc = head
    elif isinstance(model.classifier, nn.Sequential):  # EfficientNet: keep its Dropout
        model.classifier[-1] = head
    else:
        model.classifier = head


# Layer aliases: names a method's layer parameters may use instead of module names, resolved
# per architecture by :func:`layer_aliases` (docs/protocol.md §3). torchvision has no module
# called either, so an alias never hides a module.
LAYER_ALIASES = ("last", "combined")


def layer_aliases(model: nn.Module) -> dict[str, list[str]]:
    """What each of :data:`LAYER_ALIASES` names in ``model``: ``last``, the module whose output
    is the last spatial feature map before the head's pooling (the layer a CAM uses), and
    ``combined``, the paper's combined NormGrad set: the first block at each of the output
    strides 8, 16 and 32 (a ResNet's layer2.0, layer3.0, layer4.0), then ``last``. The rule is
    chosen by the model's torchvision class, so it holds for every depth and width; another
    model has no aliases (an InputError)."""
    models = torchvision.models
    if isinstance(model, models.ResNet):
        # A stage's first block strides by 2; layer4's last block feeds the pooling.
        last = f"layer4.{len(model.layer4) - 1}"
        firsts = ["layer2.0", "layer3.0", "layer4.0"]
    elif isinstance(model, models.DenseNet):
        # features ends denseblock4, norm5; the head applies ReLU and pooling to norm5's output.
        # norm5 rather than denseblock4: the head (and so a CAM's weights) sees the channels
        # after that batch norm's per-channel scale. Dense blocks 2-4 start at strides 8, 16,
        # 32 (after transitions 1-3); their first dense layer is the first block there.
        last = "features.norm5"
        firsts = [f"features.denseblock{k}.denselayer1" for k in (2, 3, 4)]
    elif isinstance(model, models.EfficientNet):
        # features: the stem (stride 2), the MBConv stages, then a 1x1 conv (+BN, SiLU) whose
        # output the head pools. In every torchvision EfficientNet (B0-B7, V2 S/M/L) stages 3,
        # 4 and 6 are the ones reaching strides 8, 16 and 32 (stages 5 and 7, where present,
        # keep the stride), so their first blocks are features.3.0, features.4.0, features.6.0.
        last = f"features.{len(model.features) - 1}"
        firsts = ["features.3.0", "features.4.0", "features.6.0"]
    else:
        raise InputError(
            f"no layer aliases ({', '.join(LAYER_ALIASES)}) for a {type(model).__name__}: they "
            "exist for torchvision's ResNets, DenseNets and EfficientNets; name the layers"
        )
    return {"last": [last], "combined": [*firsts, last]}


def imagenet_weights_path(arch: str) -> Path:
    """Where torchvision keeps (or would keep) ``arch``'s ImageNet weights: the torch hub cache."""
    weights = torchvision.models.get_model_weights(arch).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: weights file not found") from None
    except Exception as exc:  # pickle errors, refused globals, truncated zip archives
        raise InputError(f"{path}: not a loadable weights file ({_first_line(exc)})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: not a state dict of tensors")
    return state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def build_model(arch: str, pretrained: str = "none", classes: int = 2) -> nn.Module:
    """``arch`` from torchvision with its final layer replaced by ``classes`` outputs.

    ``pretrained``: ``none`` (random init), ``imagenet`` (torchvision's weights from the local
    torch cache; nothing is downloaded) or the path of a state-dict file of the same
    architecture with its ImageNet head.
    """
    if arch not in architectures():
        raise InputError(
            f"unknown architecture {arch!r}; choose one of: {', '.join(architectures())}"
        )
    model = torchvision.models.get_model(arch, weights=None)
    if pretrained != "none":
        if pretrained == "imagenet":
            path = imagenet_weights_path(arch)
            if not path.is_file():
                raise InputError(
                    f"ImageNet weights for {arch} are not in the local torch cache ({path}); "
                    f'download them once where there is internet (python -c "import '
                    f"torchvision; torchvision.models.get_model('{arch}', weights='DEFAULT')\") "
                    f"and copy the file there, or pass --pretrained /path/to/weights.pth"
                )
        else:
            path = Path(pretrained)
        state = _load_state_dict(path)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise InputError(
                f"{path}: not {arch} weights (missing {len(missing)} keys, e.g. "
                f"{missing[:2]}; unexpected {len(unexpected)}, e.g. {unexpected[:2]})"
            )
    _replace_head(model, classes)
    return model


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """Grey images (N, S, S) uint8 or float in [0, 1] → (N, 3, S, S) ImageNet-normalised."""
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    x = images.unsqueeze(1).expand(-1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def save_model(path: str | os.PathLike, model: nn.Module, meta: dict[str, Any]) -> None:
    """Weights plus what is needed to rebuild the model, loadable with weights_only=True."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "xiqa_version": __version__,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        **meta,
        "state_dict": state,
    }
    with atomic_output(path) as tmp:
        torch.save(checkpoint, tmp)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's dict, loaded safely (no code runs) and checked to be xiqa's."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: model checkpoint not found") from None
    except Exception as exc:  # pickled code is refused here by weights_only
        raise InputError(f"{path}: not a loadable xiqa checkpoint ({_first_line(exc)})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not an xiqa model checkpoint (no format {CHECKPOINT_FORMAT!r})")
    for key in ("arch", "image_size", "state_dict"):
        if key not in checkpoint:
            raise InputError(f"{path}: checkpoint lacks {key!r}")
    return checkpoint


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """The model of an xiqa checkpoint in eval mode on ``device``, and the checkpoint's metadata."""
    checkpoint = read_checkpoint(path)
    model = build_model(checkpoint["arch"])
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        raise InputError(
            f"{path}: weights do not fit architecture {checkpoint['arch']!r} ({_first_line(exc)})"
        ) from None
    meta = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    return model.to(device).eval(), meta


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA GPU is available here (use auto or cpu)")
    return torch.device(device)


def use_full_fp32(device: torch.device) -> None:
    """Saliency maps are computed in full fp32: bf16 autocast moved the peak of up to half the
    maps (measured on the demo model), and TF32 convolutions round like bf16's mantissa."""
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
