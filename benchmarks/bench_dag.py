"""How long Snakemake takes to build the paper configuration's DAG (a dry run), with one model
and with three seeds of each of two architectures (ResNet-34, EfficientNet-B0) in one study.

The paper's setup has twelve methods, two splits and eight shards per split: about 300 jobs
with its localisation, FROC and faithfulness jobs; six models make about six times as many.
Both are timed in the same run, alternately, as whole processes (Python and Snakemake's start
included), and printed with their ratio. The dataset folder must exist (Snakemake checks the
split rule's input); without --dataset a small synthetic Object-CXR is written to a temporary
folder first (not timed).

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

import yaml

from xiqa.data.synth import write_synthetic

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    f"{arch}-s{seed}": {"arch": arch, "seed": seed}
    for arch in ("resnet34", "efficientnet_b0")
    for seed in range(3)
}


def dry_run(tmp: str, dataset: Path, extra: list[str]) -> tuple[float, str]:
    """Seconds of one dry run of the paper config (plus ``extra`` config files), and its jobs."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--dry-run", "--quiet", "rules", "--cores", "8",
         "--snakefile", str(REPO / "Snakefile"), "--directory", tmp,
         "--configfile", str(REPO / "config" / "paper.yaml"), *extra,
         "--config", f"dataset={dataset}"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    return seconds, re.search(r"^total\s+(\d+)$", result.stdout + result.stderr, re.M).group(1)


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
        models = Path(tmp) / "models.yaml"
        models.write_text(yaml.safe_dump({"models": MODELS}))
        runs = {"one model": [], "3 seeds x 2 architectures": []}
        jobs = {}
        for _ in range(args.repeats):
            for name, extra in zip(runs, ([], [str(models)]), strict=True):
                seconds, jobs[name] = dry_run(tmp, dataset, extra)
                runs[name].append(seconds)
    for name, times in runs.items():
        print(
            f"paper config, {name}: {jobs[name]} jobs; dry run (whole process) median "
            f"{statistics.median(times):.2f} s, min {min(times):.2f} s over {args.repeats}"
        )
    one, six = (statistics.median(t) for t in runs.values())
    print(f"ratio six models / one: {six / one:.2f}")


if __name__ == "__main__":
    main()
