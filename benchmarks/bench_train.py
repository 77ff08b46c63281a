"""Training throughput against the input pipeline's, measured in the same run.

The input pipeline (gather cached uint8 images, move, augment on the device, normalise) must not
be the bottleneck: its images/s should be at least 3x the training step's (forward, backward,
SGD step). On CUDA both fp32 and bf16 autocast steps are timed.

    python benchmarks/bench_train.py [--arch resnet34] [--size 128] [--batch-size 32]
                                     [--device auto] [--steps 5]

Images are random uint8 in memory: the cost of a batch does not depend on its content.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from xiqa.model.network import build_model, resolve_device
from xiqa.model.train import load_batch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(step, batches: int, batch_size: int, device: torch.device) -> float:
    step()  # warm-up: allocations, cuDNN autotuning
    _sync(device)
    start = time.perf_counter()
    for _ in range(batches):
        step()
    _sync(device)
    return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet34")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    device = resolve_device(args.device)
    n = args.batch_size * 8
    images = torch.randint(0, 256, (n, args.size, args.size), dtype=torch.uint8)
    labels = torch.randint(0, 2, (n,))
    if device.type == "cuda":
        images, labels = images.pin_memory(), labels.pin_memory()
    generator = torch.Generator().manual_seed(0)

    def load():
        index = torch.randint(0, n, (args.batch_size,), generator=generator)
        return load_batch(images, labels, index, device, generator)

    model = build_model(args.arch).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = load()

    def train_step(bf16: bool):
        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    loader = images_per_second(load, args.steps * 4, args.batch_size, device)
    rows = [("input pipeline (gather, augment, normalise)", loader)]
    rows.append(
        (
            "training step, fp32",
            images_per_second(train_step(False), args.steps, args.batch_size, device),
        )
    )
    if device.type == "cuda":
        rows.append(
            (
                "training step, bf16 autocast",
                images_per_second(train_step(True), args.steps, args.batch_size, device),
            )
        )
    print(
        f"{args.arch} at {args.size}x{args.size}, batch {args.batch_size}, on {device} "
        f"({torch.get_num_threads()} threads)"
    )
    print()
    print("| stage | images/s | input pipeline / stage |")
    print("|---|---:|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:.1f} | {loader / rate:.1f}x |")


if __name__ == "__main__":
    main()
