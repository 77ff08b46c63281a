"""Saliency cost per method against its floor and against Captum / pytorch-grad-cam.

One run, ResNet-34 (random weights), 192×192 by default, CPU. Every ratio compares two figures
timed alternately (A, B, A, B, ...), so that the load of a shared machine weighs on both alike.

- One-pass methods (the paper's twelve presets, NormGrad selective, Grad-CAM++, XGrad-CAM,
  LayerCAM, HiResCAM) on a batch of --batch-size images, against their floor: one forward and
  one backward to the first probed layer, or to the input, with bare hooks and no parameter
  gradients. Medians of --repeats runs after a warm-up.
- Many-pass methods on --multipass-images images, once each (hundreds of passes need no
  warm-up), with modest settings: Score-CAM over all 512 channels of layer4.2 (512 masked
  forwards per image), RISE with --rise-masks masks, Integrated Gradients with --ig-steps steps,
  SmoothGrad with --smoothgrad-samples samples, in chunks of 32 inputs. Their floor is one
  clean forward plus one pass per mask, channel, step or sample, a pass being a gradient-free
  forward (perturbation) or a forward and backward to the input (path, noise), timed at a batch
  of 32 just before and just after the method (the mean of the two).
- Libraries: Captum's LayerGradCam, GuidedBackprop, InputXGradient (on the batch, medians),
  IntegratedGradients (riemann_right) and NoiseTunnel(Saliency) (the many-pass settings, once),
  and pytorch-grad-cam's GradCAM, each alternated with ours.

Forward passes per image are counted by a forward hook on the model (inputs through its forward
during one call, divided by the images), never assumed.

On a machine whose cores other jobs share, use --threads 1: a torch thread waiting for a
descheduled sibling can make a pass 30 times slower, and then no figure means anything.

    python benchmarks/bench_saliency.py [--size 192] [--batch-size 2] [--repeats 3]
        [--multipass-images 1] [--rise-masks 128] [--ig-steps 16] [--smoothgrad-samples 16]
        [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings

import torch
from torch import nn

from xiqa.model.network import build_model
from xiqa.saliency import FAMILIES, PRESETS, explain
from xiqa.saliency.probe import named_module

PASS_BATCH = 32  # inputs per chunk for the many-pass methods (their default batch_size)
ONE_PASS = {
    **PRESETS,
    **{
        f"normgrad-selective-{kind}": {
            "family": "normgrad",
            "virtual_layer": "selective",
            "layers": PRESETS[f"normgrad-scaling-{kind}"]["layers"],
        }
        for kind in ("single", "combined")
    },
    **{
        family: {"family": family, "layer": "layer4.2"}
        for family in ("gradcam-plusplus", "xgradcam", "layercam", "hirescam")
    },
}


def many_pass_methods(args) -> dict[str, dict]:
    return {
        "scorecam": {"family": "scorecam", "layer": "layer4.2", "batch_size": PASS_BATCH},
        "rise": {"family": "rise", "n_masks": args.rise_masks, "batch_size": PASS_BATCH},
        "integrated-gradients": {
            "family": "integrated-gradients",
            "n_steps": args.ig_steps,
            "batch_size": PASS_BATCH,
        },
        "smoothgrad": {
            "family": "smoothgrad",
            "n_samples": args.smoothgrad_samples,
            "batch_size": PASS_BATCH,
        },
    }


def seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def alternated(first, second, repeats: int, warm_up: bool = True) -> tuple[float, float]:
    """Median seconds of two functions timed alternately, ``repeats`` times each."""
    if warm_up:
        first(), second()
    times = [(seconds(first), seconds(second)) for _ in range(repeats)]
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def counted(model: nn.Module, function, n_inputs: int) -> tuple[float, float]:
    """Seconds of one call of ``function``, and the inputs that went through ``model``'s
    forward meanwhile per input (a forward hook sums the batch sizes)."""
    count = 0

    def hook(module, inputs, output):
        nonlocal count
        count += len(inputs[0])

    handle = model.register_forward_hook(hook)
    try:
        elapsed = seconds(function)
    finally:
        handle.remove()
    return elapsed, count / n_inputs


def forward_floor(model: nn.Module, images: torch.Tensor):
    """One gradient-free forward pass: the least work of one masked input."""

    def run():
        with torch.no_grad():
            model(images)

    return run


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


def one_pass_floor(bare: nn.Module, images, targets, entry: dict):
    """The floor of a one-pass method: to its first probed layer, or to the input; Guided
    Grad-CAM makes a guided pass and a Grad-CAM pass."""
    layers = entry.get("layers") or ([entry["layer"]] if "layer" in entry else [])
    if entry["family"] == "guided-gradcam":
        to_input, to_layer = (
            floor(bare, images, targets, None),
            floor(bare, images, targets, layers[0]),
        )
        return lambda: (to_input(), to_layer())
    return floor(bare, images, targets, min(layers) if layers else None)  # "layer2.0" < "layer4.2"


def described(entry: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in entry.items() if k not in ("family", "batch_size"))


def main() -> None:
    warnings.filterwarnings("ignore", category=UserWarning, module="captum")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--multipass-images", type=int, default=1)
    parser.add_argument("--rise-masks", type=int, default=128)
    parser.add_argument("--ig-steps", type=int, default=16)
    parser.add_argument("--smoothgrad-samples", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    many_pass = many_pass_methods(args)
    benchmarked = {entry["family"] for entry in [*ONE_PASS.values(), *many_pass.values()]}
    assert benchmarked == set(FAMILIES), set(FAMILIES) ^ benchmarked  # every family
    torch.manual_seed(0)
    model = build_model("resnet34").eval()
    images = torch.randn(args.batch_size, 3, args.size, args.size)
    targets = torch.randint(0, 2, (args.batch_size,))
    few_images, few_targets = images[: args.multipass_images], targets[: args.multipass_images]
    bare = copy.deepcopy(model).requires_grad_(False)  # the floor computes no parameter grads

    def ours(name: str, entry: dict, x: torch.Tensor, t: torch.Tensor):
        return lambda: explain(model, x, t, name, **entry)

    per_image = 1e3 / args.batch_size  # seconds per batch → ms per image
    print(
        f"ResNet-34, {args.size}x{args.size}, CPU ({torch.get_num_threads()} threads); one-pass "
        f"methods: batch {args.batch_size}, median of {args.repeats}; many-pass methods: "
        f"{args.multipass_images} image(s), once, in chunks of {PASS_BATCH}"
    )
    print()
    print("| method | ms/image | forwards/image | floor ms/image | x floor |")
    print("|---|---:|---:|---:|---:|")
    ms_per_image = {}
    for name, entry in ONE_PASS.items():
        run = ours(name, entry, images, targets)
        _, forwards = counted(model, run, args.batch_size)  # also the warm-up
        method_s, floor_s = alternated(
            run, one_pass_floor(bare, images, targets, entry), args.repeats, warm_up=False
        )
        ms_per_image[name] = method_s * per_image
        print(
            f"| {name} | {method_s * per_image:.1f} | {forwards:g} | {floor_s * per_image:.1f} | "
            f"{method_s / floor_s:.2f} |"
        )

    pass_images = torch.randn(PASS_BATCH, 3, args.size, args.size)
    pass_targets = torch.randint(0, 2, (PASS_BATCH,))
    pass_floor = {
        "forward": forward_floor(bare, pass_images),
        "backward": floor(bare, pass_images, pass_targets, None),
    }
    for function in pass_floor.values():
        function()  # warm-up
    print()
    print(
        "| many-pass method | parameters | ms/image | forwards/image | ms/pass floor | "
        "floor ms/image | x floor |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, entry in many_pass.items():
        kind = "forward" if name in ("scorecam", "rise") else "backward"
        before = seconds(pass_floor[kind]) / PASS_BATCH
        clean = seconds(pass_floor["forward"]) / PASS_BATCH
        run = ours(name, entry, few_images, few_targets)
        method_s, forwards = counted(model, run, args.multipass_images)
        after = seconds(pass_floor[kind]) / PASS_BATCH
        per_pass = (before + after) / 2
        floor_ms = (clean + per_pass * (forwards - 1)) * 1e3
        ms = method_s / args.multipass_images * 1e3
        print(
            f"| {name} | {described(entry)} | {ms:.1f} | {forwards:g} | {per_pass * 1e3:.1f} | "
            f"{floor_ms:.1f} | {ms / floor_ms:.2f} |"
        )
    print()
    print(libraries_table(model, images, targets, few_images, few_targets, many_pass, args))


def libraries_table(model, images, targets, few_images, few_targets, many_pass, args) -> str:
    """Each library alternated with ours on the same images and settings."""
    from captum.attr import (
        GuidedBackprop,
        InputXGradient,
        IntegratedGradients,
        LayerAttribution,
        LayerGradCam,
        NoiseTunnel,
        Saliency,
    )
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def captum_gradcam():
        cam = LayerGradCam(model, model.layer4[2]).attribute(images, target=targets.tolist())
        return LayerAttribution.interpolate(cam, images.shape[-2:], interpolate_mode="bilinear")

    def captum_integrated_gradients():
        IntegratedGradients(model).attribute(
            few_images,
            target=few_targets.tolist(),
            n_steps=args.ig_steps,
            method="riemann_right",
            internal_batch_size=PASS_BATCH,
        )

    def captum_smoothgrad():
        for image, target in zip(few_images, few_targets, strict=True):
            NoiseTunnel(Saliency(model)).attribute(
                image[None],
                nt_type="smoothgrad",
                nt_samples=args.smoothgrad_samples,
                nt_samples_batch_size=PASS_BATCH,
                stdevs=0.15 * float(image.max() - image.min()),  # our default noise level
                target=int(target),
            )

    out_of_place = copy.deepcopy(model)  # Captum's guided backprop cannot wrap in-place ReLUs
    for module in out_of_place.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    grad_cam_targets = [ClassifierOutputTarget(int(t)) for t in targets]

    def ours(name, x, t, **params):
        return lambda: explain(model, x, t, name, **params)

    lines = [
        "| library | ms/image | ours | ours ms/image | ours / library |",
        "|---|---:|---|---:|---:|",
    ]
    with GradCAM(model=model, target_layers=[model.layer4[2]]) as pgc:
        one_pass = {
            "captum LayerGradCam": (captum_gradcam, "gradcam"),
            "pytorch-grad-cam GradCAM": (
                lambda: pgc(input_tensor=images, targets=grad_cam_targets),
                "gradcam",
            ),
            "captum GuidedBackprop": (
                lambda: GuidedBackprop(out_of_place).attribute(images, target=targets.tolist()),
                "guided-backprop",
            ),
            "captum InputXGradient": (
                lambda: InputXGradient(model).attribute(images, target=targets.tolist()),
                "input-x-gradient",
            ),
        }
        for library, (function, name) in one_pass.items():
            theirs, mine = alternated(function, ours(name, images, targets), args.repeats)
            lines.append(row(library, theirs, name, mine, len(images)))
    for library, function, name in (
        ("captum IntegratedGradients", captum_integrated_gradients, "integrated-gradients"),
        ("captum NoiseTunnel(Saliency)", captum_smoothgrad, "smoothgrad"),
    ):
        params = {k: v for k, v in many_pass[name].items() if k != "family"}
        mine_run = ours(name, few_images, few_targets, **params)
        theirs, mine = alternated(function, mine_run, 1, warm_up=False)
        lines.append(row(library, theirs, name, mine, len(few_images)))
    return "\n".join(lines)


def row(library: str, theirs: float, name: str, mine: float, n_images: int) -> str:
    return (
        f"| {library} | {theirs / n_images * 1e3:.1f} | {name} | {mine / n_images * 1e3:.1f} | "
        f"{mine / theirs:.2f} |"
    )


if __name__ == "__main__":
    main()
