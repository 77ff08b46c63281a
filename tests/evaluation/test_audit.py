"""The paper audit: xiqa audit's per-variant pointing game, and the audit table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from xiqa.data.cache import load_cache
from xiqa.errors import InputError
from xiqa.evaluation.audit import AUDIT_COLUMNS, audit_table, run_audit, write_audit_tables
from xiqa.evaluation.pointing import pointing_hit
from xiqa.evaluation.stats import mcnemar_exact
from xiqa.model.network import build_model, load_model, save_model, to_model_input
from xiqa.saliency import explain

from conftest import assert_one_line_error, run_cli

# Until xiqa.saliency.audit_variants lands, variants built from existing families: the layer
# stands in for a deviation.
VARIANTS = {
    "correct": {"family": "gradcam", "layer": "layer4.1"},
    "all": {"family": "gradcam", "layer": "layer4.0"},
}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(path, build_model("resnet18").eval(), {"arch": "resnet18", "image_size": 32})
    return path


def test_audit_scores_each_variant_as_explain_and_peak_do(model_file, tiny_caches, tmp_path):
    out = tmp_path / "audit.csv"
    counts = run_audit(model_file, tiny_caches["val"], "gradcam", VARIANTS, 3.0, out, 3, "cpu")
    frame = pd.read_csv(out)
    assert tuple(frame.columns) == AUDIT_COLUMNS
    cache = load_cache(tiny_caches["val"])
    model, _ = load_model(model_file)
    counted = [i for i in np.flatnonzero(cache.label == 1) if len(cache.boxes_of(int(i)))]
    assert counted and counts["correct"]["n"] == len(counted)
    x = to_model_input(torch.from_numpy(cache.images[counted]))
    labels = torch.from_numpy(cache.label[counted])
    expected = []
    for name, entry in VARIANTS.items():
        params = {k: v for k, v in entry.items() if k != "family"}
        maps = torch.cat(  # in the audit's batches of 3: float32 sums depend on the batch
            [
                explain(model, xs, ts, entry["family"], **params)
                for xs, ts in zip(x.split(3), labels.split(3), strict=True)
            ]
        ).numpy()
        for index, saliency_map in zip(counted, maps, strict=True):
            hit, px, py, distance = pointing_hit(saliency_map, cache.boxes_of(int(index)), 3.0)
            ties = int((saliency_map == saliency_map.max()).sum())
            expected.append((cache.image_name[index], name, px, py, ties, distance, int(hit)))
    got = list(frame.itertuples(index=False, name=None))
    assert [g[:5] + (g[6],) for g in got] == [e[:5] + (e[6],) for e in expected]
    np.testing.assert_allclose([g[5] for g in got], [e[5] for e in expected])
    assert counts["all"]["hits"] == sum(e[6] for e in expected if e[1] == "all")


def test_audit_refuses_bad_variants(model_file, tiny_caches, tmp_path):
    args = ["audit", "--model", model_file, "--images", tiny_caches["val"], "--method", "gradcam"]
    args += ["--tau", "3", "--out", tmp_path / "a.csv", "--variants"]
    assert_one_line_error(run_cli(*args, "{not json"), "--variants is not valid JSON")
    assert_one_line_error(run_cli(*args, '{"correct": 1}'), "entry with a 'family'")
    no_reference = json.dumps({"all": VARIANTS["all"]})
    assert_one_line_error(run_cli(*args, no_reference), "no 'correct' variant")
    bad_layer = json.dumps({"correct": {"family": "gradcam", "layer": "layer9"}})
    assert_one_line_error(run_cli(*args, bad_layer), "layer9")
    assert not (tmp_path / "a.csv").exists()
    with pytest.raises(InputError, match="tolerance must be positive"):
        run_audit(model_file, tiny_caches["val"], "gradcam", VARIANTS, 0, tmp_path / "a.csv")


def _audit_csv(path, variants: dict[str, list[int]], ties: dict[str, list[int]]):
    rows = [
        (f"{k}.jpg", name, 1, 1, ties.get(name, [1] * len(hits))[k], 0.0 if hit else 9.0, hit)
        for name, hits in variants.items()
        for k, hit in enumerate(hits)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=AUDIT_COLUMNS).to_csv(path, index=False)


def test_audit_table_by_hand(tmp_path):
    # 10 images. correct hits 0-5 (6/10); all hits image 0 only: 5 discordant pairs, all
    # correct's, p = 2 * (1/2)^5 = 0.0625; hook hits 0, 2-7: 2 pairs its own, 1 correct's,
    # p = P(X <= 1) + P(X >= 2) over Binomial(3, 1/2) = 1.
    variants = {
        "correct": [1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
        "hook": [1, 0, 1, 1, 1, 1, 1, 1, 0, 0],
        "all": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    }
    _audit_csv(tmp_path / "audit" / "gradcam" / "val.csv", variants, {"all": [5, 5] + [1] * 8})
    rows = audit_table(tmp_path, {"gradcam": {"family": "gradcam"}}, ["val"], paper=False)
    by = {row["variant"]: row for row in rows}
    assert [row["variant"] for row in rows] == ["correct", "hook", "all"]
    correct, hook, everything = by["correct"], by["hook"], by["all"]
    assert (correct["val_n"], correct["val_hits"], correct["val_accuracy"]) == (10, 6, 0.6)
    # Wilson, z = 1.959964 (6 of 10): (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n).
    assert correct["val_ci_low"] == pytest.approx(0.312674, abs=1e-6)
    assert correct["val_ci_high"] == pytest.approx(0.831820, abs=1e-6)
    assert everything["val_ci_low"] == pytest.approx(0.017876, abs=1e-6)  # 1 of 10
    assert everything["val_ci_high"] == pytest.approx(0.404150, abs=1e-6)
    assert correct["val_p_vs_correct"] == ""
    assert everything["val_p_vs_correct"] == pytest.approx(0.0625)
    assert hook["val_p_vs_correct"] == pytest.approx(1.0)
    assert everything["val_tied_peaks"] == pytest.approx(0.2) and hook["val_tied_peaks"] == 0
    # The paper's published Grad-CAM values, on the all row only.
    assert (everything["paper_val"], everything["paper_test"]) == (0.684, 0.656)
    assert correct["paper_val"] == hook["paper_test"] == ""


def test_mcnemar_exact_is_statsmodels_exact_mcnemar():
    from statsmodels.stats.contingency_tables import mcnemar

    for only_a, only_b in ((0, 5), (2, 1), (1, 9), (7, 3), (4, 4)):
        table = [[3, only_a], [only_b, 2]]
        assert mcnemar_exact(only_a, only_b) == pytest.approx(mcnemar(table, exact=True).pvalue)


def test_audit_tables_and_figure(tmp_path):
    variants = {"correct": [1, 1, 0, 0], "target": [1, 0, 0, 0], "all": [0, 0, 0, 0]}
    for method in ("gradcam", "normgrad-conv1x1-combined"):
        for split in ("val", "test"):
            _audit_csv(tmp_path / "audit" / method / f"{split}.csv", variants, {})
    methods = {
        "gradcam": {"family": "gradcam"},
        "normgrad-conv1x1-combined": {"family": "normgrad"},
    }
    rows = write_audit_tables(tmp_path, methods, ["val", "test"], paper=False, tau=6)
    assert len(rows) == 6
    markdown = (tmp_path / "tables" / "audit.md").read_text()
    assert "| gradcam | **all** | 0.000 [0.000, 0.490] (n = 4) | 0.500 |" in markdown
    assert "| 0.684 | 0.656 |" in markdown and "| 0.880 | 0.846 |" in markdown
    assert "differs from this run's (here τ = 6 px)" in markdown
    latex = (tmp_path / "tables" / "audit.tex").read_text()
    assert r"\begin{tabular}{llrrrrrr}" in latex and "ref." in latex
    assert pd.read_csv(tmp_path / "tables" / "audit.csv").shape[0] == 6
    for suffix in ("png", "pdf"):
        assert (tmp_path / "figures" / f"audit.{suffix}").stat().st_size > 0


def test_audit_table_needs_the_correct_variant(tmp_path):
    _audit_csv(tmp_path / "audit" / "gradcam" / "val.csv", {"all": [1, 0]}, {})
    with pytest.raises(InputError, match="no 'correct' variant"):
        audit_table(tmp_path, {"gradcam": {"family": "gradcam"}}, ["val"], paper=False)
    with pytest.raises(InputError, match="audit results not found"):
        audit_table(tmp_path, {"gradcam": {"family": "gradcam"}}, ["test"], paper=False)


def test_audit_table_refuses_bad_methods(tmp_path):
    args = ["audit-table", "--results", tmp_path, "--methods"]
    assert_one_line_error(run_cli(*args, "{"), "--methods is not valid JSON")
    assert_one_line_error(run_cli(*args, '{"gradcam": 1}'), "--methods must map each method")
    assert_one_line_error(run_cli(*args, '{"gradcam": {"family": "gradcam"}}'), "not found")
