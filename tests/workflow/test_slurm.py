"""The SLURM profile, unchanged, on a real single-node SLURM cluster started by the test."""

from __future__ import annotations

import os

import pytest
import yaml
from slurm_cluster import available, slurm_cluster

from xiqa.data.cache import load_cache

from conftest import REPO, copy_workflow, run_snakemake

PROFILE = REPO / "workflow" / "profiles" / "slurm"  # --profile takes the folder
TINY = """
synthetic: {n_train: 16, n_dev: 8, n_test: 8, seed: 2}
image_size: 32
train: {epochs: 1, batch_size: 8}
n_shards: 1
sanity: {n_images: 2, stages: all}
"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not available() and not os.environ.get("XIQA_REQUIRE_SLURM"),
        reason="SLURM (slurm-wlm, munge) is not installed; .ci/run installs it",
    ),
]


def test_tiny_workflow_completes_through_sbatch(tmp_path):
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    partitions = {profile["default-resources"]["slurm_partition"]: True}
    for resources in profile["set-resources"].values():
        partitions.setdefault(resources.get("slurm_partition", ""), False)
    partitions.pop("", None)
    work = copy_workflow(tmp_path / "work", ("normgrad-conv1x1-combined", "gradcam"))
    (work / "tiny.yaml").write_text(TINY)
    with slurm_cluster(tmp_path / "slurm", partitions) as env:
        result = run_snakemake(  # the cluster's srun shim stays ahead of the real srun on PATH
            work,
            "--profile",
            PROFILE,
            "--configfile",
            "config.yaml",
            "tiny.yaml",
            "--slurm-status-command",
            "squeue",
            "--slurm-init-seconds-before-status-checks",
            "1",
            "--seconds-between-status-checks",
            "2",
            "--jobs",
            "4",
            cores=None,
            env=env,
            timeout=1500,
        )
        log = result.stdout + result.stderr
        assert result.returncode == 0, log[-4000:]
    # Every job but the local tables went through sbatch: synth, split, 3 prepare, train,
    # 2 predict, 4 saliency, 4 pointing, 2 sanity, 4 audit (the demo config audits both methods
    # on both splits), 4 localisation, 4 FROC (the demo's froc.methods: all), 4 faithfulness
    # and 2 of its chance maps.
    assert log.count("has been submitted with SLURM jobid") == 36, log[-4000:]
    blocks = {block.split(":", 1)[0]: block for block in log.split("\nrule ")[1:]}
    for rule in ("train", "saliency", "sanity", "audit", "faithfulness", "faithfulness_chance"):
        assert "slurm_partition=your-gpu-partition" in blocks[rule], blocks[rule]
        assert "gpu=1" in blocks[rule], blocks[rule]
    results = work / "results"
    assert len(load_cache(results / "cache" / "test.h5")) == 8
    assert (results / "tables" / "pointing_game.md").read_text().count("|") > 10
    assert (results / "model" / "model.pt").exists()
