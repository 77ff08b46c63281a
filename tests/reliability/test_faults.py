"""Fault injection: `kill -9` in the middle of each stage and of the workflow.

A killed command must leave nothing at its output path, and its rerun must complete to the same
result as an uninterrupted run: training resumes after its last finished epoch. A killed workflow
reruns to completion and redoes only what was not finished.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from xiqa.data.synth import write_synthetic
from xiqa.model.network import build_model, save_model

from conftest import copy_workflow, run_cli, run_snakemake, start_snakemake

XIQA = [sys.executable, "-m", "xiqa.cli"]

pytestmark = pytest.mark.slow  # every test runs real commands until it kills them, then reruns


def open_files(pid: int) -> list[str]:
    """Paths the process has open (Linux /proc)."""
    paths = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            paths.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return paths


def writing(out: Path) -> Callable[[int], bool]:
    """True once the process has the temporary of ``out`` open, i.e. is writing it."""
    prefix = str(out.parent / f".{out.name}.")
    return lambda pid: any(p.startswith(prefix) for p in open_files(pid))


def reading(paths: list[Path]) -> Callable[[int], bool]:
    names = {str(p) for p in paths}
    return lambda pid: any(p in names for p in open_files(pid))


def kill_when(args: list, condition: Callable[[int], bool], timeout: float = 300) -> str:
    """Run ``xiqa ARGS``; `kill -9` it the moment ``condition(pid)`` holds. Returns its stderr;
    fails the test if it exits before the condition was seen."""
    proc = subprocess.Popen(
        [*XIQA, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if condition(proc.pid):
                    proc.send_signal(signal.SIGKILL)
                    break
            except FileNotFoundError:  # /proc entry gone: it has just exited
                break
            time.sleep(0.0005)
    finally:
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"not killed in time: rc {proc.returncode} {stderr}"
    return stderr


def run(args: list) -> str:
    result = subprocess.run([*XIQA, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stderr


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*.tmp"))


def hdf5_content(path: Path) -> dict:
    with h5py.File(path) as h5:
        data = {k: h5[k][()] for k in h5}
        data.update({f"@{k}": v for k, v in h5.attrs.items()})
    return data


def assert_same_hdf5(a: Path, b: Path) -> None:
    left, right = hdf5_content(a), hdf5_content(b)
    assert left.keys() == right.keys()
    for key in left:
        assert np.array_equal(left[key], right[key]), key


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict[str, Path]:
    """A dataset large enough for a kill to land mid-work: 400 val images, cached at 64 px,
    a split, and a random model."""
    root = tmp_path_factory.mktemp("faults")
    write_synthetic(root / "data", n_train=24, n_dev=400, n_test=8, seed=5)
    assert run_cli("split", "--dataset", root / "data", "--out", root / "splits").exit_code == 0
    cache = root / "val.h5"
    run(["prepare", root / "splits" / "val.csv", "--size", 64, "--out", cache, "--num-workers", 1])
    run(["prepare", root / "splits" / "train.csv", "--size", 64, "--out", root / "train.h5"])
    torch.manual_seed(0)
    save_model(
        root / "model.pt", build_model("resnet18").eval(), {"arch": "resnet18", "image_size": 64}
    )
    return {
        "root": root,
        "manifest": root / "splits" / "val.csv",
        "val": cache,
        "train": root / "train.h5",
        "model": root / "model.pt",
    }


def test_killed_prepare_leaves_nothing_and_reruns(study, tmp_path):
    out = tmp_path / "cache" / "val.h5"
    args = ["prepare", study["manifest"], "--size", 64, "--out", out, "--num-workers", 1]
    kill_when(args, writing(out))
    assert not out.exists()
    assert temporaries(tmp_path)  # the killed writer's temporary, at another name
    run(args)
    assert temporaries(tmp_path) == []  # the rerun cleared it
    assert_same_hdf5(out, study["val"])


def saliency_args(study, shard: int, out: Path) -> list:
    """One Input x Gradient shard of two over the ~200 val positives, in small batches."""
    return [
        "saliency",
        "--model",
        study["model"],
        "--images",
        study["val"],
        "--method",
        "input-x-gradient",
        "--shard",
        shard,
        "--n-shards",
        2,
        "--batch-size",
        4,
        "--dtype",
        "float32",
        "--device",
        "cpu",
        "--out",
        out,
    ]


@pytest.fixture(scope="module")
def shards(study) -> list[Path]:
    paths = [study["root"] / f"shard-{k}.h5" for k in range(2)]
    for k, path in enumerate(paths):
        run(saliency_args(study, k, path))
    return paths


def test_killed_saliency_leaves_nothing_and_reruns(study, shards, tmp_path):
    out = tmp_path / "0.h5"
    kill_when(saliency_args(study, 0, out), writing(out))
    assert not out.exists()
    run(saliency_args(study, 0, out))
    assert temporaries(tmp_path) == []
    assert_same_hdf5(out, shards[0])


def test_killed_pointing_leaves_nothing_and_reruns(study, shards, tmp_path):
    def pointing_args(out: Path) -> list:
        return [
            "pointing",
            "--model",
            study["model"],
            "--images",
            study["val"],
            "--tau",
            4,
            "--out",
            out,
            *shards,
        ]

    out = tmp_path / "pointing.csv"
    kill_when(pointing_args(out), reading(shards))
    assert not out.exists()
    run(pointing_args(out))
    run(pointing_args(tmp_path / "again.csv"))
    assert out.read_bytes() == (tmp_path / "again.csv").read_bytes()


def test_killed_training_resumes_to_the_same_weights(study, tmp_path):
    recipe = [
        "--arch",
        "resnet18",
        "--epochs",
        3,
        "--batch-size",
        8,
        "--no-augment",
        "--warmup-iters",
        2,
        "--device",
        "cpu",
    ]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    data = ["--train", study["train"], "--val", study["train"]]  # small: epochs of ~1 s
    run(["train", *data, "--out", whole, *recipe])
    args = ["train", *data, "--out", killed, *recipe]
    kill_when(args, lambda pid: (killed / "checkpoint.pt").exists())
    assert not (killed / "model.pt").exists() and not (killed / "metrics.json").exists()
    resumed = run(args)
    assert "epoch 1/3" not in resumed and "epoch 2/3" in resumed, resumed  # epoch 1 kept
    assert temporaries(killed) == []
    for name in ("model.pt", "checkpoint.pt"):
        a = torch.load(whole / name, weights_only=True)
        b = torch.load(killed / name, weights_only=True)
        state = "state_dict" if name == "model.pt" else "model"
        for key in a[state]:
            torch.testing.assert_close(b[state][key], a[state][key], atol=1e-6, rtol=0)


# --- the workflow ---------------------------------------------------------------------------------

TINY = """
synthetic: {n_train: 16, n_dev: 24, n_test: 8, seed: 2}
image_size: 32
train: {epochs: 1, batch_size: 8}
n_shards: 2
sanity: {n_images: 2, stages: [fc, conv1]}
"""


def finished(results: Path) -> dict[str, int]:
    """The workflow's outputs present now (not logs or benchmarks), with their mtimes."""
    return {
        str(p.relative_to(results)): p.stat().st_mtime_ns
        for p in results.rglob("*")
        if p.is_file()
        and not p.name.startswith(".")
        and p.relative_to(results).parts[0] not in ("logs", "benchmarks")
    }


def marked_incomplete(workdir: Path) -> set[str]:
    """Outputs (relative to results/) whose jobs Snakemake started but had not yet recorded as
    finished when it was killed: its markers are the base64 of each output's path."""
    folder = workdir / ".snakemake" / "incomplete"
    paths = {base64.urlsafe_b64decode(p.name).decode() for p in folder.iterdir() if p.is_file()}
    return {str(Path(p).relative_to("results")) for p in paths}


def test_killed_workflow_reruns_only_what_was_not_finished(tmp_path):
    copy_workflow(tmp_path, ("gradcam", "input-x-gradient"))
    (tmp_path / "tiny.yaml").write_text(TINY)
    results = tmp_path / "results"
    # killpg takes the jobs too
    proc = start_snakemake(tmp_path, "--configfile", "config.yaml", "tiny.yaml")
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        if any((results / "saliency").rglob(".*.tmp")):  # a saliency job is writing its shard
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.001)
    log = proc.communicate(timeout=60)[0]
    assert proc.returncode == -signal.SIGKILL, log
    interrupted = [p.parent / p.name.split(".")[1] for p in (results / "saliency").rglob(".*.tmp")]
    assert len(interrupted) == 1 and not interrupted[0].with_suffix(".h5").exists()
    # A job that had just renamed its output when the kill came may still be marked incomplete
    # (Snakemake records a job as finished after it exits); --rerun-incomplete redoes those.
    unrecorded = marked_incomplete(tmp_path)
    before = {k: v for k, v in finished(results).items() if k not in unrecorded}
    assert "model/model.pt" in before

    run_snakemake(tmp_path, "--unlock", cores=None, check=True)  # a killed Snakemake's lock
    plan = run_snakemake(
        tmp_path,
        "--configfile",
        "config.yaml",
        "tiny.yaml",
        "--rerun-incomplete",
        "--dry-run",
        "--quiet",
        "rules",
        stderr=subprocess.STDOUT,
        timeout=300,
    )
    planned = plan.stdout
    assert plan.returncode == 0, planned
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", planned, re.MULTILINE))
    missing = 8 - sum(k.startswith("saliency/") for k in before)  # 2 methods x 2 splits x 2
    assert int(counts["saliency"]) == missing and "train" not in counts, planned

    rerun = run_snakemake(
        tmp_path,
        "--configfile",
        "config.yaml",
        "tiny.yaml",
        "--rerun-incomplete",
        stderr=subprocess.STDOUT,
        timeout=900,
    )
    log = rerun.stdout
    assert rerun.returncode == 0, log[-3000:]
    after = finished(results)
    assert {k: after[k] for k in before} == before  # nothing finished was redone
    assert "tables/pointing_game.md" in after
    assert not list(results.rglob(".*.tmp"))
