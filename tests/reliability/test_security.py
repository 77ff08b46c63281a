"""Security: nothing read is ever executed, names stay inside their dataset, PIL's bomb guard
stays on, and config strings reach the shell only quoted."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re

import pytest
import yaml
from PIL import Image

import xiqa

from conftest import REPO, copy_workflow, make_dataset, run_snakemake

SOURCES = sorted((REPO / "src" / "xiqa").rglob("*.py"))


def test_every_torch_load_is_weights_only():
    calls = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
                calls.append((path.name, node.lineno, keywords.get("weights_only")))
    assert calls, "no torch.load found: the check looks in the wrong place"
    assert [c for c in calls if c[2] != "True"] == []


def test_no_code_runs_a_shell_or_unpickles():
    risky_calls = {"eval", "exec", "os.system", "pickle.load", "pickle.loads", "yaml.load"}
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            shell = any(k.arg == "shell" and ast.unparse(k.value) != "False" for k in node.keywords)
            if ast.unparse(node.func) in risky_calls or shell:
                found.append(f"{path.name}:{node.lineno}")
    assert found == []


def test_pil_decompression_bomb_guard_stays_on():
    for module in pkgutil.walk_packages(xiqa.__path__, "xiqa."):
        importlib.import_module(module.name)
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS <= 2 * 89_478_485


def test_workflow_quotes_every_path_in_its_shell_commands():
    """Paths and wildcards reach the shell quoted (:q); config strings in params are quoted too
    (or pre-quoted with shlex, as the train options are)."""
    rules = "".join(p.read_text() for p in sorted((REPO / "workflow" / "rules").glob("*.smk")))
    shells = re.findall(r"shell:\n((?:\s+\".*\"\n)+)", rules)
    assert len(shells) == len(re.findall(r"^rule ", rules, re.MULTILINE))  # every rule
    placeholders = re.findall(r"\{([^}]+)\}", "".join(shells))
    numeric = {
        "params.n_train",
        "params.n_dev",
        "params.n_test",
        "params.seed",
        "params.size",
        "params.test_size",
        "params.tau",
        "params.n_shards",
        "params.n_images",
        "params.curve_factors",
        "wildcards.shard",
        "threads",
    }
    pre_quoted = {
        "params.options",
        "params.paper",
        "params.smooth",
        "params.splits",
        "params.stages",
        "params.max_images",
        "params.all_images",
    }
    unquoted = [p for p in placeholders if not p.endswith(":q") and p not in numeric | pre_quoted]
    assert unquoted == []


@pytest.mark.slow  # runs Snakemake
def test_a_dataset_path_with_shell_metacharacters_is_only_a_path(tmp_path):
    """The config's dataset path goes through the split and prepare rules verbatim: no word
    splitting, no command substitution."""
    workdir = copy_workflow(tmp_path / "study", ("gradcam",))
    dataset = tmp_path / "my data; touch pwned $(touch pwned2) 'x'"
    make_dataset(
        dataset,
        {
            "train": [(f"{k:05d}.jpg", "0 10 10 40 40" if k % 2 else "") for k in range(1, 9)],
            "dev": [("00100.jpg", "0 5 5 20 20"), ("00101.jpg", "")],
            "test": [("00200.jpg", "")],
        },
    )
    (workdir / "real.yaml").write_text(yaml.safe_dump({"dataset": str(dataset), "image_size": 32}))
    config = ("--configfile", "config.yaml", "real.yaml")
    result = run_snakemake(workdir, "results/cache/val.h5", *config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "results" / "cache" / "val.h5").is_file()
    assert not list(workdir.rglob("pwned*")) and not list(tmp_path.glob("pwned*"))
