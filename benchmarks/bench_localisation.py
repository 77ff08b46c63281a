"""The localisation metrics' cost per map against reading the shard, at 600×600.

Builds (in a temporary folder) a synthetic dataset cached at S×S and float16 shards of smooth
random maps of every image, then times, in the same run: reading the shards alone (HDF5
decompression and scaling), `xiqa pointing` (run_pointing), `xiqa localisation`
(run_localisation: true-shape masks, Otsu and the 19 fraction masks, IoU with shapes and boxes)
and `xiqa froc` (run_froc_predictions: peaks after non-maximum suppression, the two CSVs).
Prints milliseconds per map and each command's time as a multiple of reading.

    python benchmarks/bench_localisation.py [--maps 200] [--size 600] [--shards 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from xiqa.evaluation.froc import run_froc_predictions
from xiqa.evaluation.localisation import run_localisation
from xiqa.evaluation.pointing import run_pointing
from xiqa.evaluation.shards import read_shard

from bench_pointing import build_study  # run as a script: benchmarks/ is on sys.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=200)
    parser.add_argument("--size", type=int, default=600)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache, paths = build_study(tmp, args.maps, args.size, args.shards)
        commands = {
            "read the shards": lambda: [read_shard(p) for p in paths],
            "xiqa pointing": lambda: run_pointing(tmp / "train.h5", paths, 25, tmp / "p.csv"),
            "xiqa localisation": lambda: run_localisation(tmp / "train.h5", paths, tmp / "l.csv"),
            "xiqa froc": lambda: run_froc_predictions(
                tmp / "train.h5", paths, tmp / "froc", radius=25, top_k=3
            ),
        }
        times = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, command in commands.items():
                start = time.perf_counter()
                command()
                times[name].append(time.perf_counter() - start)
    n = len(cache)
    print(
        f"{n} maps of {args.size}x{args.size} in {args.shards} float16 shards, median of "
        f"{args.repeats} runs"
    )
    print()
    reading = statistics.median(times["read the shards"])
    print(f"{'':<20} {'ms/map':>8} {'x reading':>10}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<20} {1000 * median / n:>8.1f} {median / reading:>10.1f}")


if __name__ == "__main__":
    main()
