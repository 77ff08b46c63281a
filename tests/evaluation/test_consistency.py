"""Consistency across several models: Kendall's W, repeatability and reproducibility, per-image
peak agreement, checked against hand-worked values and brute-force enumeration."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from xiqa.cli import main
from xiqa.errors import InputError
from xiqa.evaluation.consistency import StudyModel, parse_models, write_consistency
from xiqa.evaluation.pointing import POINTING_COLUMNS
from xiqa.evaluation.stats import kendall_w, kendall_w_permutation_p


def test_kendall_w_by_hand():
    # Three raters rank four items: rank sums 4, 6, 8, 12 (mean 7.5), S = 35,
    # W = 12 S / (m^2 (n^3 - n)) = 420 / 540.
    ranks = [[1, 2, 3, 4], [2, 1, 3, 4], [1, 3, 2, 4]]
    assert kendall_w(ranks) == pytest.approx(7 / 9, abs=1e-12)
    # Ties share their mean rank and are corrected for: rater 1 ties the first two items
    # (ranks 1.5, 1.5, 3, 4; T = 2^3 - 2), rank sums 2.5, 3.5, 6, 8, S = 18.5,
    # W = 12 * 18.5 / (4 * 60 - 2 * 6).
    assert kendall_w([[0.1, 0.1, 0.5, 0.9], [1, 2, 3, 4]]) == pytest.approx(222 / 228, abs=1e-12)
    assert kendall_w([[3, 2, 1], [3, 2, 1]]) == 1.0  # the direction is the raters' own
    assert kendall_w([[0.5, 0.2], [0.2, 0.5]]) == 0.0  # opposite rankings of two items
    assert math.isnan(kendall_w([[1, 1, 1], [2, 2, 2]]))  # nothing ranked


def _exact_p(scores: np.ndarray) -> float:
    """The permutation p-value by enumerating every combination of the raters' orderings."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=1)
    observed = kendall_w(scores)
    m, n = ranks.shape
    hits = total = 0
    for orders in itertools.product(itertools.permutations(range(n)), repeat=m):
        shuffled = np.array([ranks[j][list(o)] for j, o in enumerate(orders)])
        hits += kendall_w(shuffled) >= observed - 1e-12
        total += 1
    return hits / total


@pytest.mark.parametrize(
    "scores",
    [
        [[0.9, 0.5, 0.1, 0.3], [0.8, 0.6, 0.2, 0.1]],
        [[0.2, 0.2, 0.7, 0.1], [0.1, 0.4, 0.4, 0.3], [0.5, 0.1, 0.3, 0.9]],
    ],
)
def test_kendall_w_permutation_p_matches_enumeration(scores):
    scores = np.array(scores)
    exact = _exact_p(scores)
    # (1 + k) / (1 + N) with N = 40 000 Monte Carlo draws: within 0.01 of the exact tail share.
    p = kendall_w_permutation_p(scores, 40000, np.random.default_rng(0))
    assert p == pytest.approx(exact, abs=0.01)
    assert p >= 1 / 40001  # never 0


def _pointing_csv(path: Path, rows: list[tuple[str, int, int, int]]) -> None:
    """A pointing CSV of (image, hit, peak_x, peak_y) rows, every image counted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        [
            {
                "image_name": name,
                "peak_x": x,
                "peak_y": y,
                "n_ties": 1,
                "distance": 0.0 if hit else 9.0,
                "hit": hit,
                "label": 1,
                "prob": 0.9,
                "counted": 1,
                "n_boxes": 1,
                "energy": 0.5,
                "box_share": 0.1,
            }
            for name, hit, x, y in rows
        ],
        columns=POINTING_COLUMNS,
    )
    frame.to_csv(path, index=False)


METHODS = {
    "gradcam": {"family": "gradcam", "layer": "last"},
    "ixg": {"family": "input-x-gradient"},
    "gbp": {"family": "guided-backprop"},
}


@pytest.fixture
def study(tmp_path: Path) -> tuple[Path, list[StudyModel]]:
    """Three models (two ResNet-18 seeds, one DenseNet) scoring three methods on four images of
    val; the DenseNet does not run gbp."""
    hits = {  # model -> method -> hits of images a, b, c, d
        "r18-s0": {"gradcam": [1, 1, 1, 0], "ixg": [1, 0, 0, 0], "gbp": [0, 0, 0, 0]},
        "r18-s1": {"gradcam": [1, 1, 0, 0], "ixg": [1, 1, 0, 0], "gbp": [1, 0, 0, 0]},
        "dn": {"gradcam": [1, 1, 1, 1], "ixg": [0, 0, 0, 0]},
    }
    peaks = {  # image -> (x, y) per model; gradcam's peaks, the others at the origin
        "r18-s0": [(0, 0), (10, 10), (5, 5), (7, 7)],
        "r18-s1": [(3, 4), (10, 10), (20, 5), (7, 7)],
        "dn": [(0, 0)] * 4,
    }
    for model, per_method in hits.items():
        for method, values in per_method.items():
            xy = peaks[model] if method == "gradcam" else [(0, 0)] * 4
            rows = [(n, h, x, y) for n, h, (x, y) in zip("abcd", values, xy, strict=True)]
            _pointing_csv(tmp_path / "models" / model / "pointing" / method / "val.csv", rows)
    models = [
        StudyModel("r18-s0", "resnet18", ("gradcam", "ixg", "gbp")),
        StudyModel("r18-s1", "resnet18", ("gradcam", "ixg", "gbp")),
        StudyModel("dn", "densenet121", ("gradcam", "ixg")),
    ]
    return tmp_path, models


def _read(path: Path) -> list[dict]:
    return pd.read_csv(path).to_dict("records")


def test_accuracies_repeatability_and_reproducibility(study):
    results, models = study
    write_consistency(results, models, METHODS, ["val"], tau=6, n_permutations=200)
    rows = {r["name"]: r for r in _read(results / "tables" / "consistency.csv")}
    gradcam = rows["gradcam"]
    assert (gradcam["acc_r18-s0"], gradcam["acc_r18-s1"], gradcam["acc_dn"]) == (0.75, 0.5, 1.0)
    assert gradcam["mean"] == pytest.approx(0.75) and gradcam["n_models"] == 3
    assert gradcam["sd"] == pytest.approx(np.std([0.75, 0.5, 1.0], ddof=1))
    # Repeatability: the two ResNet-18 seeds; reproducibility: ResNet-18's mean (0.625) against
    # DenseNet's (1.0).
    assert gradcam["repeat_resnet18_mean"] == pytest.approx(0.625)
    assert gradcam["repeat_resnet18_sd"] == pytest.approx(np.std([0.75, 0.5], ddof=1))
    assert gradcam["reproduce_mean"] == pytest.approx(0.8125)
    assert gradcam["reproduce_sd"] == pytest.approx(np.std([0.625, 1.0], ddof=1))
    assert "repeat_densenet121_sd" not in gradcam  # one DenseNet: no seeds to compare
    # A method a model does not run: blank there, the statistics over the others.
    gbp = rows["gbp"]
    assert math.isnan(gbp["acc_dn"]) and gbp["n_models"] == 2 and gbp["mean"] == 0.125
    assert gbp["reproduce_mean"] == pytest.approx(0.125)  # only ResNet-18 has a mean

    ranking = {r["models"]: r for r in _read(results / "tables" / "consistency_ranking.csv")}
    # All three models rank the methods they all run (gradcam, ixg); the two seeds rank all three.
    assert ranking["all"]["n_methods"] == 2 and ranking["all"]["n_models"] == 3
    scores = np.array([[0.75, 0.25], [0.5, 0.5], [1.0, 0.0]])
    assert ranking["all"]["kendall_w"] == pytest.approx(kendall_w(scores))
    seeds = ranking["resnet18"]
    assert seeds["n_methods"] == 3
    assert seeds["kendall_w"] == pytest.approx(kendall_w([[0.75, 0.25, 0], [0.5, 0.5, 0.25]]))
    assert seeds["chi2"] == pytest.approx(2 * 2 * seeds["kendall_w"])
    assert 0 < seeds["p_permutation"] <= 1 and 0 < seeds["p_chi2"] <= 1


def test_peak_agreement_of_two_seeds_by_hand(study):
    results, models = study
    write_consistency(results, models, METHODS, ["val"], tau=6, n_permutations=0)
    peaks = [r for r in _read(results / "tables" / "consistency_peaks.csv")]
    assert {(r["model_a"], r["model_b"]) for r in peaks} == {("r18-s0", "r18-s1")}
    gradcam = next(r for r in peaks if r["name"] == "gradcam")
    # Peak distances 5, 0, 15, 0: three of four within tau = 6; mean 5.
    assert gradcam["n"] == 4 and gradcam["peak_agreement"] == 0.75
    assert gradcam["mean_peak_distance"] == pytest.approx(5.0)
    assert gradcam["ci_low"] < 0.75 < gradcam["ci_high"]
    # Hits 1110 against 1100: three of four the same; kappa = (0.75 - 0.5) / (1 - 0.5).
    assert gradcam["hit_agreement"] == 0.75 and gradcam["kappa"] == pytest.approx(0.5)
    # ixg: 1000 against 1100: p_o 0.75, p_e = 0.25 * 0.5 + 0.75 * 0.5 = 0.5.
    ixg = next(r for r in peaks if r["name"] == "ixg")
    assert ixg["kappa"] == pytest.approx(0.5) and ixg["peak_agreement"] == 1.0
    text = (results / "tables" / "consistency.md").read_text()
    assert "Kendall's W" in text and "| gradcam | r18-s0 – r18-s1 | 4 |" in text
    assert (results / "figures" / "consistency.png").stat().st_size > 1000
    assert r"\begin{table}" in (results / "tables" / "consistency.tex").read_text()


def test_bad_inputs_are_one_line_and_write_nothing(study, tmp_path):
    results, models = study
    with pytest.raises(InputError, match="two or more models"):
        write_consistency(results, models[:1], METHODS, ["val"], tau=6)
    with pytest.raises(InputError, match="'ixg' runs on none"):
        only = [StudyModel(m.name, m.arch, ("gradcam",)) for m in models]
        write_consistency(results, only, METHODS, ["val"], tau=6)
    for value, message in [
        ("[1]", "must map each model"),
        ('{"a": {"arch": "resnet18"}}', "'a' must have an 'arch' and a list of 'methods'"),
        ("{", "not valid JSON"),
    ]:
        with pytest.raises(InputError, match=message):
            parse_models(value)
    assert not (results / "tables").exists()
    # The command: a missing pointing CSV is named, nothing is written.
    runner = CliRunner()
    models_json = json.dumps({"r18-s0": {"arch": "resnet18", "methods": ["gradcam"]},
                              "x": {"arch": "resnet18", "methods": ["gradcam"]}})  # fmt: skip
    result = runner.invoke(
        main,
        ["consistency", "--results", str(results), "--models", models_json,
         "--methods", json.dumps({"gradcam": METHODS["gradcam"]}), "--splits", "val",
         "--tau", "6"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.output.count("xiqa: error:") == 1 and "models/x/pointing/gradcam/val.csv" in (
        result.output
    )
    assert not (results / "tables").exists()
