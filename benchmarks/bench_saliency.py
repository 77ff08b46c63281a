"""Saliency cost per method against its floor and against Captum / pytorch-grad-cam.

One run, one batch (ResNet-34, 192×192 by default, CPU): every preset's time; the floor of each
(one forward and one backward to its first probed layer, or to the input, with bare hooks and no
parameter gradients); Captum's LayerGradCam, GuidedBackprop and InputXGradient, and
pytorch-grad-cam's GradCAM. Medians of --repeats runs; ratios are against the floor and, for
Grad-CAM, against the two libraries.

    python benchmarks/bench_saliency.py [--size 192] [--batch-size 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings

import torch
from torch import nn

from xiqa.model import build_model
from xiqa.probe import named_module
from xiqa.saliency import PRESETS, explain


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def floor(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: str | None):
    """The least work any method probing ``layer`` (None: the input) must do."""

    def run():
        captured = {}
        handle = None
        x = images
        if layer is None:
            x = images.detach().requires_grad_(True)
        else:

            def hook(module, inputs, output):
                captured["a"] = output.detach().requires_grad_(True)
                return captured["a"] * 1  # keep the leaf out of later in-place ops

            handle = named_module(model, layer).register_forward_hook(hook)
        try:
            logits = model(x)
            score = logits.gather(1, targets.view(-1, 1)).sum()
            torch.autograd.grad(score, captured["a"] if layer else x)
        finally:
            if handle is not None:
                handle.remove()

    return run


def main() -> None:
    warnings.filterwarnings("ignore", category=UserWarning, module="captum")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model("resnet34").eval()
    images = torch.randn(args.batch_size, 3, args.size, args.size)
    targets = torch.randint(0, 2, (args.batch_size,))
    bare = copy.deepcopy(model).requires_grad_(False)  # the floor computes no parameter grads

    def measure_floors() -> dict[str | None, float]:
        return {
            layer: median_seconds(floor(bare, images, targets, layer), args.repeats)
            for layer in ("layer4.2", "layer2.0", None)
        }

    floors = measure_floors()

    seconds = {
        name: median_seconds(lambda n=name: explain(model, images, targets, n), args.repeats)
        for name in PRESETS
    }

    # Measured again after the methods (the machine warms up): the floor is the lower figure.
    floors = {
        k: min(v, w) for (k, v), w in zip(floors.items(), measure_floors().values(), strict=True)
    }
    rows = []
    for name, entry in PRESETS.items():
        layers = entry.get("layers") or ([entry["layer"]] if "layer" in entry else [])
        floor_s = floors[min(layers)] if layers else floors[None]  # "layer2.0" < "layer4.2"
        if entry["family"] == "guided-gradcam":  # a guided pass plus a Grad-CAM pass
            floor_s = floors[None] + floors["layer4.2"]
        rows.append((name, seconds[name], floor_s))

    from captum.attr import (
        GuidedBackprop,
        InputXGradient,
        LayerAttribution,
        LayerGradCam,
    )
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def captum_gradcam():
        cam = LayerGradCam(model, model.layer4[2]).attribute(images, target=targets.tolist())
        return LayerAttribution.interpolate(cam, images.shape[-2:], interpolate_mode="bilinear")

    out_of_place = copy.deepcopy(model)
    for module in out_of_place.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    grad_cam_targets = [ClassifierOutputTarget(int(t)) for t in targets]
    with GradCAM(model=model, target_layers=[model.layer4[2]]) as pgc:
        library = {
            "captum LayerGradCam": median_seconds(captum_gradcam, args.repeats),
            "pytorch-grad-cam GradCAM": median_seconds(
                lambda: pgc(input_tensor=images, targets=grad_cam_targets), args.repeats
            ),
            "captum GuidedBackprop": median_seconds(
                lambda: GuidedBackprop(out_of_place).attribute(images, target=targets.tolist()),
                args.repeats,
            ),
            "captum InputXGradient": median_seconds(
                lambda: InputXGradient(model).attribute(images, target=targets.tolist()),
                args.repeats,
            ),
        }

    per_image = 1e3 / args.batch_size
    print(
        f"ResNet-34, batch {args.batch_size} at {args.size}x{args.size}, CPU "
        f"({torch.get_num_threads()} threads), median of {args.repeats}"
    )
    print()
    print("| method | ms/image | floor ms/image | x floor |")
    print("|---|---:|---:|---:|")
    for layer, seconds in floors.items():
        print(f"| floor to {layer or 'the input'} | {seconds * per_image:.1f} | | |")
    for name, seconds, floor_s in rows:
        print(
            f"| {name} | {seconds * per_image:.1f} | {floor_s * per_image:.1f} | "
            f"{seconds / floor_s:.2f} |"
        )
    ours = dict((name, seconds) for name, seconds, _ in rows)
    print()
    print("| library | ms/image | ours ms/image | ours / library |")
    print("|---|---:|---:|---:|")
    for name, seconds in library.items():
        mine = {
            "captum LayerGradCam": "gradcam",
            "pytorch-grad-cam GradCAM": "gradcam",
            "captum GuidedBackprop": "guided-backprop",
            "captum InputXGradient": "input-x-gradient",
        }[name]
        print(
            f"| {name} | {seconds * per_image:.1f} | {ours[mine] * per_image:.1f} | "
            f"{ours[mine] / seconds:.2f} |"
        )


if __name__ == "__main__":
    main()
