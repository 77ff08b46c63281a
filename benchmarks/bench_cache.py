"""Per-image cost of the paper's per-epoch image load against one read from the xiqa cache.

The paper's pipeline decodes every full-size JPEG (about 2560×3072) each epoch, converts it to
RGB and resizes it with Lanczos to 600×600. xiqa decodes once (`xiqa prepare`) and training reads
a 600×600 uint8 image from HDF5. Both are measured here in the same run, on the same images, and
printed as a table with their ratio.

    python benchmarks/bench_cache.py --images DIR [--size 600] [--repeats 5]

DIR holds a few real Object-CXR JPEGs (full-size radiographs); where it has none the benchmark
says so and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from xiqa.data.cache import prepare_cache
from xiqa.data.images import ImageRef
from xiqa.data.objectcxr import Record
from xiqa.data.split import write_manifest


def paper_load(path: Path, size: int) -> np.ndarray:
    """What the paper's dataset did for every image, every epoch."""
    image = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(image)


def cache_read(h5: h5py.File, index: int) -> np.ndarray:
    """What xiqa's training reads per image: one chunk of the cache."""
    return h5["images"][index]


def seconds_per_call(function, items, repeats: int) -> list[float]:
    """Per-item seconds of each repeat (the median repeat is quoted)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            function(item)
        times.append((time.perf_counter() - start) / len(items))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--size", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    paths = sorted(args.images.glob("*.jpg")) if args.images.is_dir() else []
    if not paths:
        print(f"no JPEG radiographs in {args.images}: benchmark skipped")
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        records = []
        for path in paths:
            width, height = Image.open(path).size
            records.append(
                Record(path.name, "", (), ImageRef(str(path)), "bench", path.name, width, height)
            )
        write_manifest(records, Path(tmp) / "bench.csv")
        start = time.perf_counter()
        prepare_cache(Path(tmp) / "bench.csv", args.size, Path(tmp) / "bench.h5", num_workers=1)
        prepare_per_image = (time.perf_counter() - start) / len(paths)

        paper = seconds_per_call(lambda p: paper_load(p, args.size), paths, args.repeats)
        with h5py.File(Path(tmp) / "bench.h5", "r") as h5:
            cached = seconds_per_call(
                lambda i: cache_read(h5, i), range(len(paths)), args.repeats * 20
            )

    paper_s, cached_s = statistics.median(paper), statistics.median(cached)
    sizes = sorted({Image.open(p).size for p in paths})
    print(
        f"{len(paths)} radiographs ({', '.join(f'{w}x{h}' for w, h in sizes)}) -> "
        f"{args.size}x{args.size}; median of {args.repeats} repeats"
    )
    print()
    print("| per image | ms | ratio to cache read |")
    print("|---|---:|---:|")
    print(
        f"| paper: decode + RGB + Lanczos, every epoch | {paper_s * 1e3:.1f} | "
        f"{paper_s / cached_s:.0f}x |"
    )
    print(
        f"| xiqa prepare: draft decode + Lanczos, once | {prepare_per_image * 1e3:.1f} | "
        f"{prepare_per_image / cached_s:.0f}x |"
    )
    print(f"| xiqa cache read, every epoch | {cached_s * 1e3:.3f} | 1x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
