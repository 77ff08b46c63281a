"""`xiqa pointing` throughput on 1000 maps of 600×600, and where its time goes.

Builds (in a temporary folder) a synthetic dataset of 1000 images cached at 600×600 and eight
float16 shards of smooth random maps, then times the whole scoring (`run_pointing`) and, in the
same run, reading the same shards alone (HDF5 decompression and scaling); the rest is scoring
(peak search and box geometry) and writing the CSV.

    python benchmarks/bench_pointing.py [--maps 1000] [--size 600] [--shards 8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from xiqa.data.cache import ImageCache, load_cache, prepare_cache
from xiqa.data.split import make_splits, write_manifest
from xiqa.data.synth import write_synthetic
from xiqa.evaluation.pointing import run_pointing
from xiqa.evaluation.shards import images_digest, read_shard, write_shard


def smooth_maps(n: int, size: int, seed: int) -> np.ndarray:
    coarse = torch.rand(n, 1, 19, 19, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=(size, size), mode="bilinear")[:, 0].numpy()


def build_study(tmp: Path, maps: int, size: int, shards: int) -> tuple[ImageCache, list[Path]]:
    """In ``tmp``: a synthetic dataset of ``maps`` images cached at ``size`` (train.h5) and
    ``shards`` float16 shards of smooth random maps of every image, P(object) seeded random."""
    write_synthetic(tmp / "data", n_train=maps, n_dev=1, n_test=1, num_workers=2)
    write_manifest(make_splits(tmp / "data")["train"], tmp / "train.csv")
    prepare_cache(tmp / "train.csv", size, tmp / "train.h5", num_workers=2)
    cache = load_cache(tmp / "train.h5", with_images=False)
    paths = []
    for shard, rows in enumerate(np.array_split(np.arange(len(cache)), shards)):
        attrs = {
            "method": "bench",
            "params": "{}",
            "checkpoint_sha256": "0",
            "input_size": size,
            "target_policy": "label",
            "shard": shard,
            "n_shards": shards,
            "images_digest": images_digest(cache),
            "max_images": 0,
        }
        paths.append(tmp / f"{shard}.h5")
        with write_shard(paths[-1], [cache.image_name[i] for i in rows], rows, attrs) as w:
            probs = np.random.default_rng(shard).random(len(rows))
            w.append(smooth_maps(len(rows), size, shard), np.ones(len(rows)), probs)
    return cache, paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=1000)
    parser.add_argument("--size", type=int, default=600)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache, paths = build_study(tmp, args.maps, args.size, args.shards)
        total, reading = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run_pointing(tmp / "train.h5", paths, 25, tmp / "pointing.csv")
            total.append(time.perf_counter() - start)
            start = time.perf_counter()
            for path in paths:
                read_shard(path)
            reading.append(time.perf_counter() - start)
        megabytes = sum(p.stat().st_size for p in paths) / 2**20
    total_s, read_s = statistics.median(total), statistics.median(reading)
    print(
        f"{len(cache)} maps of {args.size}x{args.size} in {args.shards} float16 shards "
        f"({megabytes:.0f} MiB), median of {args.repeats}"
    )
    print()
    print("| part | seconds | share |")
    print("|---|---:|---:|")
    print(f"| xiqa pointing, whole ({len(cache) / total_s:.0f} maps/s) | {total_s:.2f} | 100% |")
    print(f"| reading shards (HDF5, gzip, scaling) | {read_s:.2f} | {read_s / total_s:.0%} |")
    print(
        f"| scoring and writing (the rest) | {total_s - read_s:.2f} | "
        f"{(total_s - read_s) / total_s:.0%} |"
    )


if __name__ == "__main__":
    main()
