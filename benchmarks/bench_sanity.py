"""Cost of the randomisation test (`xiqa sanity`) per method, against one pass of the method.

For each method of a config, on the same images: the seconds of one saliency pass over them (the
baseline), of the whole randomisation test in-process (the trained maps, stage ``none`` and every
measured stage), and their ratio; then the wall time of one ``xiqa sanity`` command (process start,
model load, the test, the CSV), as a workflow job spends it.

    python benchmarks/bench_sanity.py --model results/model/model.pt \\
        --images results/cache/test.h5 [--config config.yaml] [--n-images 16] [--stages a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
import yaml

from xiqa.evaluation.sanity import randomisation_correlations, randomisation_stages, sanity_images
from xiqa.model.network import to_model_input
from xiqa.model.predict import load_model_and_cache
from xiqa.saliency import explain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="results/model/model.pt")
    parser.add_argument("--images", default="results/cache/test.h5")
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--n-images", type=int, default=16)
    parser.add_argument("--stages", default=None, help="comma-separated (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    stages = args.stages.split(",") if args.stages else None
    with open(args.config) as f:
        methods = yaml.safe_load(f)["methods"]
    device = torch.device("cpu")
    model, cache = load_model_and_cache(args.model, args.images, device)
    rows = sanity_images(cache.label, args.n_images, args.seed)
    images = to_model_input(torch.from_numpy(cache.images[rows]))
    targets = torch.from_numpy(cache.label[rows])
    n_stages = len(stages or randomisation_stages(model))
    print(
        f"{args.n_images} images of {cache.size}x{cache.size}, {n_stages} stages, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'method':28s} {'one pass s':>10s} {'sanity s':>9s} {'ratio':>6s}")
    total = 0.0
    for name, entry in methods.items():
        params = dict(entry)
        family = params.pop("family")
        start = time.perf_counter()
        explain(model, images, targets, family, **params)
        one = time.perf_counter() - start
        start = time.perf_counter()
        randomisation_correlations(model, images, targets, family, params, stages, args.seed)
        whole = time.perf_counter() - start
        total += whole
        print(f"{name:28s} {one:10.2f} {whole:9.2f} {whole / one:6.1f}")
    print(f"{'all methods':28s} {'':10s} {total:9.2f}")

    name, entry = next(iter(methods.items()))
    command = [sys.executable, "-m", "xiqa.cli", "sanity", "--model", args.model]
    command += ["--images", args.images, "--method", name, "--params", json.dumps(entry)]
    command += ["--n-images", str(args.n_images), "--seed", str(args.seed), "--device", "cpu"]
    if args.stages:
        command += ["--stages", args.stages]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([*command, "--out", f"{tmp}/s.csv"], check=True, capture_output=True)
        print(f"one `xiqa sanity` command ({name}): {time.perf_counter() - start:.2f} s wall")


if __name__ == "__main__":
    main()
