"""``xiqa consistency``: do the methods' scores and ranking survive retraining the classifier?

The extended study of the paper's authors (arXiv 2303.14479) asks whether a saliency ranking is
*repeatable* (the same architecture trained with other seeds) and *reproducible* (another
architecture). From the pointing CSVs of several models of one study
(``models/{model}/pointing/{method}/{split}.csv``), per method and split:

- the pointing accuracy of each model;
- repeatability: the mean and SD (n - 1) of the accuracies of each architecture's models, for an
  architecture with two or more;
- reproducibility: the mean and SD across architectures of their mean accuracies (two or more
  architectures);
- the agreement of the methods' rankings across models (Kendall's W, with its chi-square and
  permutation p-values), for all models and for each architecture's seeds;
- per image, for two models of one architecture: the share of images whose peaks lie within
  tau of each other (Wilson interval), their mean distance, and the agreement of hit or miss
  (Cohen's kappa, scikit-learn).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import cohen_kappa_score

from xiqa.errors import InputError
from xiqa.evaluation.stats import kendall_w, kendall_w_permutation_p, wilson_interval
from xiqa.evaluation.tables import (
    MethodResult,
    _fmt,
    _latex_escape,
    _p,
    _write_csv,
    _write_text,
    latex_table,
    method_columns,
    read_pointing,
)
from xiqa.io import staged_outputs


@dataclass(frozen=True)
class StudyModel:
    """One model of the study: its name, architecture and the methods it runs."""

    name: str
    arch: str
    methods: tuple[str, ...]


def parse_models(value: str) -> list[StudyModel]:
    """``--models``: JSON mapping each model's name to its ``arch`` and ``methods`` (a list), in
    the study's order; one-line errors."""
    import json

    try:
        mapping = json.loads(value)
    except json.JSONDecodeError as exc:
        raise InputError(f"--models is not valid JSON ({exc})") from None
    if not isinstance(mapping, dict):
        raise InputError("--models must map each model name to its arch and methods")
    models = []
    for name, entry in mapping.items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("arch"), str)
            and isinstance(entry.get("methods"), list)
            and all(isinstance(m, str) for m in entry["methods"])
        ):
            raise InputError(f"--models: {name!r} must have an 'arch' and a list of 'methods'")
        models.append(StudyModel(name, entry["arch"], tuple(entry["methods"])))
    return models


def read_model_scores(
    results: Path, models: Sequence[StudyModel], splits: Sequence[str]
) -> dict[tuple[str, str, str], MethodResult]:
    """(model, method, split) -> the per-image pointing results of that model's CSV."""
    return {
        (model.name, method, split): read_pointing(
            results / "models" / model.name / "pointing" / method / f"{split}.csv"
        )
        for model in models
        for method in model.methods
        for split in splits
    }


def _accuracy(result: MethodResult) -> float:
    hits = list(result.hits.values())
    return sum(hits) / len(hits) if hits else math.nan


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample SD (n - 1; NaN for fewer than two values) of the finite values."""
    values = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if len(values) == 0:
        return math.nan, math.nan
    sd = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    return float(values.mean()), sd


def _architectures(models: Sequence[StudyModel]) -> dict[str, list[StudyModel]]:
    """Architecture -> its models, in the study's order."""
    groups: dict[str, list[StudyModel]] = {}
    for model in models:
        groups.setdefault(model.arch, []).append(model)
    return groups


def consistency_table(
    scores: dict[tuple[str, str, str], MethodResult],
    models: Sequence[StudyModel],
    methods: dict[str, dict[str, Any]],
    splits: Sequence[str],
) -> list[dict[str, Any]]:
    """One row per method and split: each model's accuracy (blank where the model does not run
    the method), the mean and SD over the models, each architecture's (repeatability) and the
    architectures' (reproducibility)."""
    groups = _architectures(models)
    rows = []
    for split in splits:
        for method, entry in methods.items():
            accuracy = {
                m.name: _accuracy(scores[m.name, method, split])
                for m in models
                if method in m.methods
            }
            row = {**method_columns(method, entry), "split": split, "n_models": len(accuracy)}
            row.update({f"acc_{m.name}": accuracy.get(m.name, math.nan) for m in models})
            row["mean"], row["sd"] = _mean_sd(list(accuracy.values()))
            row["min"] = min(accuracy.values(), default=math.nan)
            row["max"] = max(accuracy.values(), default=math.nan)
            arch_means = []
            for arch, members in groups.items():
                mean, sd = _mean_sd([accuracy[m.name] for m in members if m.name in accuracy])
                arch_means.append(mean)
                if len(members) > 1:
                    row[f"repeat_{arch}_mean"], row[f"repeat_{arch}_sd"] = mean, sd
            if len(groups) > 1:
                row["reproduce_mean"], row["reproduce_sd"] = _mean_sd(arch_means)
            rows.append(row)
    return rows


def ranking_table(
    rows: list[dict[str, Any]],
    models: Sequence[StudyModel],
    splits: Sequence[str],
    n_permutations: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Kendall's W of the methods' ranking by pointing accuracy across all models, and across
    each architecture's models (two or more), per split: over the methods every model of the
    group runs."""
    groups = {"all": list(models)}
    groups.update({a: ms for a, ms in _architectures(models).items() if len(ms) > 1})
    out = []
    rng = np.random.default_rng(seed)
    for split in splits:
        split_rows = [r for r in rows if r["split"] == split]
        for group, members in groups.items():
            if len(members) < 2:
                continue
            common = [
                r for r in split_rows if all(math.isfinite(r[f"acc_{m.name}"]) for m in members)
            ]
            # raters (models) x items (methods)
            scores = np.array([[r[f"acc_{m.name}"] for r in common] for m in members])
            w = kendall_w(scores) if len(common) > 1 else math.nan
            m, n = scores.shape
            chi2 = m * (n - 1) * w if math.isfinite(w) else math.nan
            out.append(
                {
                    "split": split,
                    "models": group,
                    "n_models": m,
                    "n_methods": n,
                    "kendall_w": w,
                    "chi2": chi2,
                    "df": n - 1,
                    "p_chi2": _chi2_p(chi2, n - 1),
                    "p_permutation": kendall_w_permutation_p(scores, n_permutations, rng)
                    if math.isfinite(w)
                    else math.nan,
                    "n_permutations": n_permutations,
                }
            )
    return out


def _chi2_p(chi2: float, df: int) -> float:
    from scipy import stats

    return float(stats.chi2.sf(chi2, df)) if math.isfinite(chi2) and df > 0 else math.nan


def peak_table(
    scores: dict[tuple[str, str, str], MethodResult],
    models: Sequence[StudyModel],
    methods: dict[str, dict[str, Any]],
    splits: Sequence[str],
    tau: float,
) -> list[dict[str, Any]]:
    """Per pair of models of one architecture, method and split, on the images both count:
    the share whose two peaks lie within ``tau`` of each other (Euclidean, as the pointing
    game's), its Wilson interval, the mean distance between the peaks, the share with the same
    hit or miss, and Cohen's kappa of the hits."""
    out = []
    for members in _architectures(models).values():
        for a, b in itertools.combinations(members, 2):
            for split in splits:
                for method, entry in methods.items():
                    if method not in a.methods or method not in b.methods:
                        continue
                    ra, rb = scores[a.name, method, split], scores[b.name, method, split]
                    names = [n for n in ra.peak if n in rb.peak]
                    d = np.array([math.dist(ra.peak[n], rb.peak[n]) for n in names])
                    close = int((d < tau).sum())
                    low, high = wilson_interval(close, len(names))
                    hits_a = [ra.hits[n] for n in names]
                    hits_b = [rb.hits[n] for n in names]
                    same = sum(x == y for x, y in zip(hits_a, hits_b, strict=True))
                    out.append(
                        {
                            **method_columns(method, entry),
                            "split": split,
                            "model_a": a.name,
                            "model_b": b.name,
                            "arch": a.arch,
                            "n": len(names),
                            "peak_agreement": close / len(names) if names else math.nan,
                            "ci_low": low,
                            "ci_high": high,
                            "mean_peak_distance": float(d.mean()) if names else math.nan,
                            "hit_agreement": same / len(names) if names else math.nan,
                            "kappa": _kappa(hits_a, hits_b),
                        }
                    )
    return out


def _kappa(a: list[int], b: list[int]) -> float:
    """Cohen's kappa of two raters' hits; NaN where it is undefined (no images, or both rate
    every image alike, when chance agreement is 1)."""
    if not a or (len(set(a)) == 1 and set(a) == set(b)):
        return math.nan
    return float(cohen_kappa_score(a, b))


def consistency_markdown(
    rows: list[dict[str, Any]],
    ranking: list[dict[str, Any]],
    peaks: list[dict[str, Any]],
    models: Sequence[StudyModel],
    splits: Sequence[str],
    tau: float,
) -> str:
    """The three tables as Markdown, per split."""
    groups = _architectures(models)
    repeated = [a for a, ms in groups.items() if len(ms) > 1]
    lines = [
        f"Pointing accuracy (τ = {tau:g} px) of each method on each model; mean ± SD over the "
        "models; repeatability: SD over one architecture's seeds; reproducibility: SD over the "
        "architectures' means.",
        "",
        "Models: " + ", ".join(f"{m.name} ({m.arch})" for m in models) + ".",
    ]
    for split in splits:
        head = ["method", *[m.name for m in models], "mean ± SD"]
        head += [f"SD {a} seeds" for a in repeated]
        head += ["SD across archs"] if len(groups) > 1 else []
        lines += ["", f"### {split}", "", "| " + " | ".join(head) + " |"]
        lines.append("|---|" + "---:|" * (len(head) - 1))
        for row in (r for r in rows if r["split"] == split):
            cells = [row["name"], *[_fmt(row[f"acc_{m.name}"]) for m in models]]
            cells.append(f"{_fmt(row['mean'])} ± {_fmt(row['sd'])}")
            cells += [_fmt(row.get(f"repeat_{a}_sd", math.nan)) for a in repeated]
            cells += [_fmt(row.get("reproduce_sd", math.nan))] if len(groups) > 1 else []
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "| models | raters | methods | Kendall's W | p (χ²) | p (permutation) |"]
        lines.append("|---|---:|---:|---:|---:|---:|")
        for r in (r for r in ranking if r["split"] == split):
            lines.append(
                f"| {r['models']} | {r['n_models']} | {r['n_methods']} | {_fmt(r['kendall_w'])} "
                f"| {_pvalue(r['p_chi2'])} | {_pvalue(r['p_permutation'])} |"
            )
        split_peaks = [r for r in peaks if r["split"] == split]
        if split_peaks:
            lines += [
                "",
                "Per image, two models of one architecture: peaks within τ of each other "
                "[95% Wilson interval], mean distance of the peaks (px), same hit or miss, "
                "Cohen's κ of the hits.",
                "",
                "| method | models | n | peaks within τ | mean distance | same hit | κ |",
                "|---|---|---:|---|---:|---:|---:|",
            ]
            for r in split_peaks:
                lines.append(
                    f"| {r['name']} | {r['model_a']} – {r['model_b']} | {r['n']} | "
                    f"{_fmt(r['peak_agreement'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | "
                    f"{_fmt(r['mean_peak_distance'], 1)} | {_fmt(r['hit_agreement'])} | "
                    f"{_fmt(r['kappa'])} |"
                )
    return "\n".join(lines) + "\n"


def _pvalue(value: float) -> str:
    return "–" if not math.isfinite(value) else _p(value)


def consistency_latex(
    rows: list[dict[str, Any]], models: Sequence[StudyModel], splits: Sequence[str], tau: float
) -> str:
    """Each model's accuracy and the mean ± SD, per method and split."""
    columns = "ll" + "r" * (len(models) + 1)
    head = " & ".join(
        ["Method", "Split", *[_latex_escape(m.name) for m in models], r"Mean $\pm$ SD"]
    )
    body = []
    for split in splits:
        for row in (r for r in rows if r["split"] == split):
            cells = [_latex_escape(row["name"]), split]
            cells += [_fmt(row[f"acc_{m.name}"]) for m in models]
            cells.append(rf"{_fmt(row['mean'])} $\pm$ {_fmt(row['sd'])}")
            body.append(" & ".join(cells) + r" \\")
    caption = (
        rf"Pointing accuracy ($\tau = {tau:g}$ px) of each method on each model of the study, "
        "and its mean and SD over the models."
    )
    return latex_table(caption, columns, head, body)


def write_consistency(
    results: str | os.PathLike,
    models: Sequence[StudyModel],
    methods: dict[str, dict[str, Any]],
    splits: Sequence[str],
    tau: float,
    n_permutations: int = 10000,
    seed: int = 0,
) -> None:
    """Write results/tables/consistency.{csv,md,tex}, consistency_ranking.csv,
    consistency_peaks.csv and results/figures/consistency.{png,pdf} (all or none)."""
    from xiqa.evaluation.figures import consistency_figure

    if len(models) < 2:
        raise InputError("consistency needs two or more models")
    for method in methods:
        if not any(method in m.methods for m in models):
            raise InputError(f"--methods: {method!r} runs on none of the models")
    results = Path(results)
    scores = read_model_scores(results, models, splits)
    rows = consistency_table(scores, models, methods, splits)
    ranking = ranking_table(rows, models, splits, n_permutations, seed)
    peaks = peak_table(scores, models, methods, splits, tau)
    with staged_outputs(results) as stage:
        tables = stage / "tables"
        _write_csv(tables / "consistency.csv", rows)
        _write_csv(tables / "consistency_ranking.csv", ranking)
        _write_csv(tables / "consistency_peaks.csv", peaks)
        text = consistency_markdown(rows, ranking, peaks, models, splits, tau)
        _write_text(tables / "consistency.md", text)
        _write_text(tables / "consistency.tex", consistency_latex(rows, models, splits, tau))
        consistency_figure(stage / "figures", rows, ranking, models, splits, tau)
