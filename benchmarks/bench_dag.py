"""How long Snakemake takes to build the paper configuration's DAG (a dry run).

The paper's setup has twelve methods, two splits and eight shards per split: about 225 jobs.
The dataset folder must exist (Snakemake checks the split rule's input); without --dataset a
small synthetic Object-CXR is written to a temporary folder first (not timed).

    python benchmarks/bench_dag.py [--dataset /path/to/object-CXR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from xiqa.data.synth import write_synthetic

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset
        if dataset is None:
            dataset = Path(tmp) / "data"
            write_synthetic(dataset, n_train=4, n_dev=2, n_test=2)
        times, jobs = [], "?"
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "snakemake",
                    "--dry-run",
                    "--quiet",
                    "rules",
                    "--cores",
                    "8",
                    "--snakefile",
                    str(REPO / "Snakefile"),
                    "--directory",
                    tmp,
                    "--configfile",
                    str(REPO / "config" / "paper.yaml"),
                    "--config",
                    f"dataset={dataset}",
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            )
            times.append(time.perf_counter() - start)
            jobs = re.search(r"^total\s+(\d+)$", result.stdout + result.stderr, re.M).group(1)
    print(
        f"paper config DAG: {jobs} jobs; dry run (whole process) median "
        f"{statistics.median(times):.2f} s, min {min(times):.2f} s over {args.repeats}"
    )


if __name__ == "__main__":
    main()
