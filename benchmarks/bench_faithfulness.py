"""Faithfulness metrics per image: xiqa's against pytorch-grad-cam's ROAD and a one-step-at-a-time
deletion/insertion loop, on the same maps and model in one process.

An untrained ResNet-18 (no weights are downloaded), random grey images and smooth random maps
at each size. ROAD: xiqa's `road` against grad-cam's `ROADMostRelevantFirst` /
`ROADLeastRelevantFirst`, both without noise (grad-cam's percentile chosen so that it removes the
same pixels), so the probabilities must agree; deletion and insertion: xiqa's batched
`deletion_insertion` against the library-style loop (perturb, one forward, next step). Prints
seconds per image, the ratio and the largest difference of the probabilities.

    python benchmarks/bench_faithfulness.py [--sizes 128,600] [--images 4,1] [--n-steps 20]
        [--road-percentages 20,50,80] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from xiqa.evaluation.faithfulness import (
    DEFAULT_BASELINE_VALUE,
    deletion_insertion,
    percentage_counts,
    road,
    saliency_order,
    step_counts,
)
from xiqa.model.network import build_model, to_model_input


def smooth_maps(n: int, size: int, seed: int) -> np.ndarray:
    coarse = torch.rand(n, 1, 19, 19, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=(size, size), mode="bilinear")[:, 0].numpy()


def grad_cam_road(model, images, maps, targets, percentages) -> tuple[np.ndarray, np.ndarray]:
    """pytorch-grad-cam's ROAD, noise 0, one percentage (all images in one batch) at a time."""
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirst, ROADMostRelevantFirst
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    n = images.shape[1] * images.shape[2]
    x = to_model_input(torch.from_numpy(images))
    fns = [ClassifierOutputSoftmaxTarget(int(t)) for t in targets]
    curves = []
    for cls in (ROADMostRelevantFirst, ROADLeastRelevantFirst):
        out = []
        for m in percentage_counts(n, percentages):
            # grad-cam keeps the pixels below its (interpolated) percentile: halfway between the
            # m-th and (m+1)-th largest removes exactly the m that xiqa removes.
            metric = cls(percentile=100 * (n - m - 0.5) / (n - 1))
            metric.perturbation.imputer.noise = 0.0
            out.append(metric(x, maps, fns, model, return_diff=False))
        curves.append(np.stack(out, axis=1))
    return curves[0], curves[1]


def loop_deletion_insertion(model, images, maps, targets, n_steps, sigma):
    """The library-style loop: per image and step, perturb and run one forward."""
    from scipy import ndimage

    curves = []
    for image, saliency, target in zip(images, maps, targets, strict=True):
        grey = image / 255.0
        order = saliency_order(saliency)
        starts = {
            "deletion": (grey, np.full_like(grey, DEFAULT_BASELINE_VALUE)),
            "insertion": (ndimage.gaussian_filter(grey, sigma, mode="reflect"), grey),
        }
        per_image = []
        for start, fill in starts.values():
            probs = []
            for m in step_counts(grey.size, n_steps):
                x = start.copy().ravel()
                x[order[:m]] = fill.ravel()[order[:m]]
                tensor = torch.from_numpy(x.reshape(grey.shape).astype(np.float32))[None]
                with torch.inference_mode():
                    probs.append(float(torch.softmax(model(to_model_input(tensor)), 1)[0, target]))
            per_image.append(probs)
        curves.append(per_image)
    curves = np.array(curves)
    return curves[:, 0], curves[:, 1]


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128,600")
    parser.add_argument("--images", default="4,1", help="images per size, comma-separated")
    parser.add_argument("--n-steps", type=int, default=20)
    parser.add_argument("--road-percentages", default="20,50,80")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--blur-sigma", type=float, default=5.0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # grad-cam's numpy use
    sizes = [int(s) for s in args.sizes.split(",")]
    counts = [int(n) for n in args.images.split(",")]
    percentages = [float(p) for p in args.road_percentages.split(",")]
    torch.manual_seed(0)
    model = build_model("resnet18").eval()
    print(
        f"CPU, {torch.get_num_threads()} threads, untrained ResNet-18; deletion/insertion "
        f"{args.n_steps} steps, ROAD at {args.road_percentages}%, noise 0, batch {args.batch_size}"
    )
    print()
    print("| size | images | metric | xiqa s/image | library s/image | library / xiqa | max diff |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for size, n in zip(sizes, counts, strict=True):
        rng = np.random.default_rng(size)
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        maps = smooth_maps(n, size, size)
        targets = np.ones(n, np.int64)
        ours_s, ours = timed(
            road, model, images, maps, targets, percentages, noise=0.0, batch_size=args.batch_size
        )
        theirs_s, theirs = timed(grad_cam_road, model, images, maps, targets, percentages)
        diff = max(np.abs(a - b).max() for a, b in zip(ours, theirs, strict=True))
        print(
            f"| {size} | {n} | ROAD MoRF + LeRF (grad-cam) | {ours_s / n:.2f} | {theirs_s / n:.2f} "
            f"| {theirs_s / ours_s:.1f}x | {diff:.1e} |"
        )
        ours_s, ours = timed(
            deletion_insertion,
            model,
            images,
            maps,
            targets,
            n_steps=args.n_steps,
            blur_sigma=args.blur_sigma,
            batch_size=args.batch_size,
        )
        loop_s, loop = timed(
            loop_deletion_insertion, model, images, maps, targets, args.n_steps, args.blur_sigma
        )
        diff = max(np.abs(a - b).max() for a, b in zip(ours, loop, strict=True))
        print(
            f"| {size} | {n} | deletion + insertion (one-step loop) | {ours_s / n:.2f} "
            f"| {loop_s / n:.2f} | {loop_s / ours_s:.1f}x | {diff:.1e} |"
        )


if __name__ == "__main__":
    main()
