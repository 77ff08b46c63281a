"""The Snakemake workflow as a user drives it, on a tiny synthetic configuration."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from xiqa.data.cache import load_cache
from xiqa.evaluation.figures import FIGURE_NAMES

from conftest import REPO, copy_workflow, run_snakemake

TINY = """
synthetic: {n_train: 16, n_dev: 8, n_test: 8, seed: 2}
image_size: 32
train: {epochs: 1, batch_size: 8}
sanity: {n_images: 2, stages: all}
"""
TINY_CONFIG = ("--configfile", "config.yaml", "tiny.yaml")  # the demo's, then tiny.yaml's keys
METHODS = ("normgrad-conv1x1-single", "normgrad-conv1x1-combined", "gradcam")

pytestmark = pytest.mark.slow  # every test runs Snakemake


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A fresh copy of the workflow files, with three of the demo's twelve methods."""
    copy_workflow(tmp_path, METHODS)
    (tmp_path / "tiny.yaml").write_text(TINY)
    return tmp_path


def test_demo_workflow_trains_and_predicts(workdir):
    result = run_snakemake(workdir, *TINY_CONFIG, cores=2)
    assert result.returncode == 0, result.stderr[-3000:]
    results = workdir / "results"
    sizes = {}
    for split in ("train", "val", "test"):
        cache = load_cache(results / "cache" / f"{split}.h5")
        assert cache.size == 32
        sizes[split] = len(cache)
    assert sizes == {"train": 16, "val": 8, "test": 8}
    checkpoint = torch.load(results / "model" / "model.pt", weights_only=True)
    assert checkpoint["arch"] == "resnet18" and checkpoint["image_size"] == 32
    for split in ("val", "test"):
        lines = (results / "predictions" / f"{split}.csv").read_text().splitlines()
        assert lines[0] == "image_name,label,prob" and len(lines) == 9
        assert json.loads((results / "predictions" / f"{split}.json").read_text())["n"] == 8
        for method in METHODS:
            assert len(list((results / "saliency" / method / split).glob("*.h5"))) == 2
            assert (results / "pointing" / method / f"{split}.csv").exists()
    table = (results / "tables" / "pointing_game.md").read_text()
    assert table.count("| NormGrad |") == 2 and "| Grad-CAM |" in table
    for name in FIGURE_NAMES:
        assert (results / "figures" / f"{name}.png").stat().st_size > 1000
        assert (results / "figures" / f"{name}.pdf").stat().st_size > 1000
    # The pointing curve at the config's tau (6) is the table's accuracy.
    game = {r["name"]: r for r in _csv(results / "tables" / "pointing_game.csv")}
    curve = [r for r in _csv(results / "tables" / "pointing_curve.csv") if float(r["tau"]) == 6]
    assert len(curve) == 2 * len(METHODS)
    for row in curve:
        assert row["accuracy"] == game[row["name"]][f"{row['split']}_accuracy"], row
    # The demo's pointing variants (tau 6 and 3.2, a sigma-1 blur): at tau 6 unsmoothed, the
    # table's accuracy; the smoothed ones count the pointing CSVs' hit_g1k7 column.
    variants = _csv(results / "tables" / "pointing_variants.csv")
    assert {(r["smoothing"], float(r["tau"])) for r in variants} == {
        (g, t) for g in ("none", "g1k7") for t in (6, 3.2)
    }
    for row in variants:
        if row["smoothing"] == "none" and float(row["tau"]) == 6:
            assert row["accuracy"] == game[row["name"]][f"{row['split']}_accuracy"], row
        if row["smoothing"] == "g1k7" and float(row["tau"]) == 6:
            scored = _csv(results / "pointing" / row["name"] / f"{row['split']}.csv")
            assert int(row["hits"]) == sum(r["hit_g1k7"] == "1" for r in scored), row
    assert "σ = 1 (7×7 px)" in (results / "tables" / "pointing_variants.md").read_text()
    energy = (results / "tables" / "energy_pointing.md").read_text()
    assert energy.count("| NormGrad |") == 2 and "area share" in energy
    # One randomisation test per method: every stage of ResNet-18, two images each.
    for method in METHODS:
        rows = _csv(results / "sanity" / f"{method}.csv")
        assert len(rows) == 2 * 12 and rows[0]["stage"] == "none"
    stages = _csv(results / "tables" / "sanity_randomisation.csv")
    assert len(stages) == 12 * len(METHODS) and stages[-1]["stage"] == "conv1"
    # The paper audit (on in the demo config): the methods with deviations, each split.
    from xiqa.saliency import audit_variants

    demo = yaml.safe_load((workdir / "config.yaml").read_text())["methods"]
    audited = [m for m in METHODS if audit_variants(demo[m])]
    for method in audited:
        for split in ("val", "test"):
            rows = _csv(results / "audit" / method / f"{split}.csv")
            assert rows and rows[0]["variant"] == "correct" and rows[-1]["variant"] == "all"
    if audited:
        audit = _csv(results / "tables" / "audit.csv")
        assert [r["method"] for r in audit if r["variant"] == "all"] == audited
        assert (results / "figures" / "audit.png").stat().st_size > 1000
    # Localisation (on by default) and the FROC (the demo's froc.methods: all): every method.
    for method in METHODS:
        for split in ("val", "test"):
            rows = _csv(results / "localisation" / method / f"{split}.csv")
            assert len(rows) == 8  # FROC methods explain every image, negatives included
            folder = results / "froc" / method / split
            lines = (folder / "prediction_localization.csv").read_text().splitlines()
            assert lines[0] == "image_path,prediction" and len(lines) == 9
            names = [line.split(",")[0] for line in lines[1:]]
            assert names == load_cache(results / "cache" / f"{split}.h5").image_name
            assert len((folder / "prediction_classification.csv").read_text().splitlines()) == 9
    froc = _csv(results / "tables" / "froc.csv")
    assert [(r["method"], r["split"]) for r in froc] == [
        (m, s) for s in ("val", "test") for m in METHODS
    ]
    assert {"froc", "sensitivity_0.125", "sensitivity_8"} <= set(froc[0])
    localisation = (results / "tables" / "localisation.md").read_text()
    assert localisation.count("| NormGrad |") == 2 and "hit-in-shape" in localisation
    assert len(_csv(results / "tables" / "localisation_by_size.csv")) == 3 * 2 * len(METHODS)
    # Faithfulness (on by default; the demo caps it at 16 positives): every method and the
    # chance maps score the same images, the split's positives here.
    for split in ("val", "test"):
        cache = load_cache(results / "cache" / f"{split}.h5")
        positives = [n for n, y in zip(cache.image_name, cache.label, strict=True) if y == 1]
        for method in METHODS:
            rows = _csv(results / "faithfulness" / method / f"{split}.csv")
            assert [r["image_name"] for r in rows] == positives
            assert "deletion_20" in rows[0] and "road_morf_90" in rows[0]  # the demo's settings
        chance = _csv(results / "faithfulness" / "_baselines" / f"{split}.csv")
        assert [r["image_name"] for r in chance] == positives * 2
    faithfulness = _csv(results / "tables" / "faithfulness.csv")
    assert [r["name"] for r in faithfulness] == [*METHODS, "random-map", "uniform-map"] * 2
    for name in ("froc", "localisation_by_size", "faithfulness"):
        assert (results / "figures" / f"{name}.png").stat().st_size > 1000
    again = run_snakemake(workdir, *TINY_CONFIG, "--dry-run", cores=2)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    report = run_snakemake(
        workdir,
        "--configfile",
        "config.yaml",
        "tiny.yaml",
        "--report",
        "results/report.html",
        cores=2,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    html = (results / "report.html").read_text(errors="replace")
    assert "pointing_accuracy.png" in html and "sanity_randomisation.png" in html
    assert ("audit.png" in html) == bool(audited)
    assert "froc.png" in html and "localisation_by_size.png" in html
    assert "faithfulness.png" in html

    # New faithfulness settings rerun the faithfulness jobs and their table, nothing else.
    (workdir / "steps.yaml").write_text("faithfulness: {max_images: 16, n_steps: 10}\n")
    changed = run_snakemake(workdir, *TINY_CONFIG, "steps.yaml", "--dry-run",
                            "--quiet", "rules", cores=2)  # fmt: skip
    assert changed.returncode == 0, changed.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", changed.stdout + changed.stderr, re.M))
    assert counts == {
        "faithfulness": str(2 * len(METHODS)),
        "faithfulness_chance": "2",
        "faithfulness_table": "1",
        "all": "1",
        "total": str(2 * len(METHODS) + 4),
    }, changed.stdout

    # Another tolerance reruns the tables only; another smoothing the pointing jobs (and the
    # tables that read them), never a saliency job.
    for variant, expected in [
        ({"extra_taus": [3.2, 2]}, {"aggregate": "1"}),
        (
            {"smoothing": [{"sigma": 1}, {"sigma": 2}]},
            {"pointing": str(2 * len(METHODS)), "aggregate": "1", "localisation_table": "1"},
        ),
    ]:
        (workdir / "variant.yaml").write_text(yaml.safe_dump({"pointing": variant}))
        changed = run_snakemake(workdir, *TINY_CONFIG, "variant.yaml", "--dry-run",
                                "--quiet", "rules", cores=2)  # fmt: skip
        assert changed.returncode == 0, changed.stderr[-3000:]
        counts = dict(re.findall(r"^(\w+)\s+(\d+)$", changed.stdout + changed.stderr, re.M))
        expected |= {"all": "1", "total": str(sum(map(int, expected.values())) + 1)}
        assert counts == expected, changed.stdout

    # A new method schedules only its own jobs (saliency, pointing, localisation, FROC and
    # faithfulness per split, its sanity test) and the tables that include it.
    with open(workdir / "tiny.yaml", "a") as f:
        f.write("methods:\n  input-x-gradient: {family: input-x-gradient}\n")
    added = run_snakemake(
        workdir,
        "--configfile",
        "config.yaml",
        "tiny.yaml",
        "--dry-run",
        "--quiet",
        "rules",
        cores=2,
    )
    assert added.returncode == 0, added.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", added.stdout + added.stderr, re.M))
    expected = {"saliency": "4", "pointing": "2", "sanity": "1", "aggregate": "1", "all": "1"}
    expected.update(localisation="2", localisation_table="1", froc="2", froc_table="1")
    expected.update(faithfulness="2", faithfulness_table="1")
    if audit_variants({"family": "input-x-gradient"}):  # audited too: its two splits, the table
        expected.update(audit="2", audit_table="1")
    expected["total"] = str(sum(map(int, expected.values())))
    assert counts == expected, added.stdout


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_real_dataset_path_is_split_in_place(workdir, synthetic_root):
    (workdir / "real.yaml").write_text(f"dataset: {synthetic_root}\nimage_size: 32\n")
    result = run_snakemake(
        workdir, "--configfile", "config.yaml", "real.yaml", "--dry-run", cores=2
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert "rule split" in out and "rule synth" not in out


def test_workflow_is_lint_clean_and_formatted():
    lint = run_snakemake(REPO, "--lint", cores=None, timeout=300)
    assert lint.returncode == 0 and "good condition" in lint.stdout + lint.stderr, lint.stdout
    snakefmt = Path(sys.executable).parent / "snakefmt"
    files = [str(REPO / "Snakefile"), str(REPO / "workflow")]
    check = subprocess.run(
        [str(snakefmt), "--check", *files], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr


def _job_counts(result: subprocess.CompletedProcess) -> dict[str, str]:
    """Rule -> job count of a ``--dry-run --quiet rules`` run."""
    return dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout + result.stderr, re.M))


def test_paper_config_builds_its_dag(tmp_path, synthetic_root):
    """The paper's setup (twelve methods, 8 shards per split) as a dry run, in a copy of the
    workflow beside the demo's config.yaml: a --configfile is the whole config, so the paper's
    study inherits none of the demo's ten further methods or its settings; then the same with
    three seeds of two architectures (docs: benchmarks/bench_dag.py times it)."""
    demo = yaml.safe_load((REPO / "config.yaml").read_text())
    copy_workflow(tmp_path, tuple(demo["methods"]))
    args = ("--dry-run", "--quiet", "rules", "--configfile", "config/paper.yaml")
    dataset = ("--config", f"dataset={synthetic_root}")
    result = run_snakemake(tmp_path, *args, *dataset, cores=8, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = _job_counts(result)
    assert counts["saliency"] == str(12 * 2 * 8) and counts["pointing"] == str(12 * 2)
    assert counts["train"] == "1" and counts["prepare"] == "3" and "synth" not in counts
    assert counts["sanity"] == "12" and "consistency" not in counts

    models = {f"{arch}-s{seed}": {"arch": arch, "seed": seed}
              for arch in ("resnet34", "efficientnet_b0") for seed in range(3)}  # fmt: skip
    (tmp_path / "models.yaml").write_text(yaml.safe_dump({"models": models}))
    result = run_snakemake(tmp_path, *args, "models.yaml", *dataset, cores=8, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = _job_counts(result)
    assert counts["train"] == "6" and counts["saliency"] == str(6 * 12 * 2 * 8)
    assert counts["prepare"] == "3" and counts["consistency"] == "1"


MULTI = """
n_shards: 1
audit: {enabled: false}
localisation: {enabled: false}
froc: {methods: []}
faithfulness: {enabled: false}
models:  # last: the test appends a model
  r18-s0: {arch: resnet18, seed: 0}
  r18-s1: {arch: resnet18, seed: 1}
  dn: {arch: densenet121, seed: 0}
"""


def test_a_study_of_several_models(tmp_path):
    """Three models (two seeds of ResNet-18, a DenseNet-121), two methods: every model's study
    under results/models/{model}/, the shared caches, the consistency tables; adding a model
    or a method schedules only its jobs."""
    copy_workflow(tmp_path, ("gradcam", "input-x-gradient"))
    (tmp_path / "tiny.yaml").write_text(TINY + MULTI)
    config = TINY_CONFIG
    result = run_snakemake(tmp_path, *config, cores=2)
    assert result.returncode == 0, result.stderr[-3000:]
    results = tmp_path / "results"
    assert not (results / "model").exists() and not (results / "pointing").exists()
    accuracy = {}
    for model, arch in (("r18-s0", "resnet18"), ("r18-s1", "resnet18"), ("dn", "densenet121")):
        root = results / "models" / model
        checkpoint = torch.load(root / "model" / "model.pt", weights_only=True)
        assert checkpoint["arch"] == arch and checkpoint["image_size"] == 32
        game = {r["name"]: r for r in _csv(root / "tables" / "pointing_game.csv")}
        assert list(game) == ["gradcam", "input-x-gradient"]
        for name, row in game.items():
            accuracy[model, name] = row
        assert (root / "figures" / "pointing_accuracy.png").stat().st_size > 1000
    weights = [
        torch.load(results / "models" / m / "model" / "model.pt", weights_only=True)["state_dict"]
        for m in ("r18-s0", "r18-s1")
    ]
    assert not torch.equal(weights[0]["fc.weight"], weights[1]["fc.weight"])  # two seeds
    rows = _csv(results / "tables" / "consistency.csv")
    assert [(r["name"], r["split"]) for r in rows] == [
        (m, s) for s in ("val", "test") for m in ("gradcam", "input-x-gradient")
    ]
    for row in rows:  # each model's accuracy is its own pointing table's
        for model in ("r18-s0", "r18-s1", "dn"):
            mine = float(row[f"acc_{model}"])
            theirs = float(accuracy[model, row["name"]][f"{row['split']}_accuracy"])
            assert mine == pytest.approx(theirs, abs=1e-12), (model, row)
    ranking = _csv(results / "tables" / "consistency_ranking.csv")
    assert [(r["split"], r["models"]) for r in ranking] == [
        (s, g) for s in ("val", "test") for g in ("all", "resnet18")
    ]
    peaks = _csv(results / "tables" / "consistency_peaks.csv")
    assert {(r["model_a"], r["model_b"]) for r in peaks} == {("r18-s0", "r18-s1")}
    assert (results / "figures" / "consistency.png").stat().st_size > 1000
    again = run_snakemake(tmp_path, *config, "--dry-run", cores=2)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    report = run_snakemake(tmp_path, *config, "--report", "results/report.html", cores=2)
    assert report.returncode == 0, report.stderr[-3000:]
    html = (results / "report.html").read_text(errors="replace")
    assert "consistency.png" in html and "r18-s1" in html

    # A new model: its own train, predict, saliency, pointing, sanity and tables, and the
    # consistency table; nothing of the other models, and the data is shared.
    with open(tmp_path / "tiny.yaml", "a") as f:
        f.write("  r18-s2: {arch: resnet18, seed: 2}\n")
    added = run_snakemake(tmp_path, *config, "--dry-run", "--quiet", "rules", cores=2)
    assert added.returncode == 0, added.stderr[-3000:]
    expected = {"train": 1, "predict": 2, "saliency": 4, "pointing": 4, "sanity": 2}
    expected.update(aggregate=1, consistency=1, all=1)
    expected["total"] = sum(expected.values())
    assert _job_counts(added) == {k: str(v) for k, v in expected.items()}, added.stdout

    # A new method: once per model (now four), then every model's tables and the consistency.
    (tmp_path / "method.yaml").write_text(
        "methods:\n  guided-backprop: {family: guided-backprop}\n"
    )
    added = run_snakemake(
        tmp_path, *config, "method.yaml", "--dry-run", "--quiet", "rules", cores=2
    )
    assert added.returncode == 0, added.stderr[-3000:]
    counts = _job_counts(added)
    # r18-s2 is new too: its 2 + 1 methods' jobs; the other three models: guided-backprop's.
    assert counts["saliency"] == str(3 * 2 + 3 * 2) and counts["sanity"] == str(3 + 3)
    assert counts["aggregate"] == "4" and counts["consistency"] == "1", added.stdout
