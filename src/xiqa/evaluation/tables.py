"""``xiqa aggregate``: the paper's Table 2 with uncertainty, the classification table, figures.

Inputs follow the workflow's layout under a results folder: ``pointing/{method}/{split}.csv``,
``predictions/{split}.{csv,json}`` (the AUC, its interval and the ROC curve as xiqa predict
computed them), ``sanity/{method}.csv``, ``cache/{split}.h5`` and
``saliency/{method}/{split}/*.h5``.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xiqa.errors import InputError
from xiqa.evaluation.pointing import POINTING_COLUMNS, Smoothing
from xiqa.evaluation.sanity import read_sanity, summarise
from xiqa.evaluation.stats import bootstrap_mean_ci, mcnemar_exact, wilson_interval
from xiqa.io import atomic_output, numeric_columns, read_results_csv, staged_outputs, write_csv
from xiqa.model.predict import read_classification_metrics, read_predictions
from xiqa.model.recipe import TrainConfig
from xiqa.saliency import FAMILIES, PRESETS

# docs/protocol.md §5: the paper's Table 2 (tau = 25 at 600x600). Guided Grad-CAM's test value is
# garbled in the published text (about 0.33) and left out.
PAPER_TABLE = {
    "normgrad-scaling-single": (0.878, 0.854),
    "normgrad-scaling-combined": (0.878, 0.846),
    "normgrad-conv1x1-single": (0.876, 0.856),
    "normgrad-conv1x1-combined": (0.880, 0.846),
    "normgrad-conv3x3-single": (0.874, 0.862),
    "normgrad-conv3x3-combined": (0.880, 0.850),
    "normgrad-bias-single": (0.120, 0.112),
    "normgrad-bias-combined": (0.776, 0.766),
    "input-x-gradient": (0.246, 0.240),
    "guided-backprop": (0.208, 0.188),
    "guided-gradcam": (0.348, None),
    "gradcam": (0.684, 0.656),
}
# The pointing curve's tolerances as multiples of tau: 0.25 tau to 4 tau in steps of 0.25.
DEFAULT_CURVE_FACTORS = tuple(k / 4 for k in range(1, 17))


@dataclass
class MethodResult:
    """One method's pointing results on one split, over the counted images (those with a box
    pixel)."""

    hits: dict[str, int] = field(default_factory=dict)  # image name -> 0/1
    distance: dict[str, float] = field(default_factory=dict)  # peak to nearest box pixel
    energy: dict[str, float] = field(default_factory=dict)  # NaN: no positive mass
    box_share: dict[str, float] = field(default_factory=dict)  # the boxes' area share
    tied: int = 0  # maps whose maximum is shared by several pixels
    peak: dict[str, tuple[int, int]] = field(default_factory=dict)  # (x, y)
    n_boxes: dict[str, int] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)  # every image with a map, also not counted
    # Per smoothing (its suffix), the distances of the smoothed maps' peaks.
    smoothed: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.hits)

    @property
    def accuracy(self) -> float:
        return sum(self.hits.values()) / self.n if self.n else math.nan


def read_pointing(path: Path, smoothings: Sequence[Smoothing] = ()) -> MethodResult:
    """One method's results on one split, from ``xiqa pointing``'s CSV, which must hold the
    columns of each of ``smoothings``."""
    smoothed = [f"distance_{s.suffix}" for s in smoothings]
    frame = read_results_csv(
        path,
        "pointing results",
        [*POINTING_COLUMNS, *smoothed],
        "xiqa pointing (snakemake --forcerun pointing)",
    )
    counted = frame[frame["counted"] == "1"]
    columns = ("hit", "distance", "energy", "box_share", "n_ties", "peak_x", "peak_y", "n_boxes")
    columns = (*columns, *smoothed)
    error = "not an xiqa pointing row"
    numbers = numeric_columns(counted, columns, path, error, optional=("energy",))
    not_hit = numbers.index[~numbers["hit"].isin([0, 1])]
    if len(not_hit):
        raise InputError(f"{path}: line {not_hit[0] + 2}: {error}")
    names = counted["image_name"].tolist()
    whole = numbers[["hit", "n_boxes", "peak_x", "peak_y"]].astype(int)

    def by_name(values: pd.Series) -> dict:
        return dict(zip(names, values.tolist(), strict=True))

    peaks = zip(whole["peak_x"].tolist(), whole["peak_y"].tolist(), strict=True)

    return MethodResult(
        hits=by_name(whole["hit"]),
        distance=by_name(numbers["distance"]),
        energy=by_name(numbers["energy"]),
        box_share=by_name(numbers["box_share"]),
        tied=int((numbers["n_ties"] > 1).sum()),
        peak=dict(zip(names, peaks, strict=True)),
        n_boxes=by_name(whole["n_boxes"]),
        images=frame["image_name"].tolist(),
        smoothed={s.suffix: by_name(numbers[c]) for s, c in zip(smoothings, smoothed, strict=True)},
    )


def read_scores(
    results: Path,
    methods: dict[str, Any],
    splits: list[str],
    smoothings: Sequence[Smoothing] = (),
) -> dict[tuple[str, str], MethodResult]:
    """Every method's pointing results per split, from ``results/pointing/{method}/{split}.csv``."""
    return {
        (m, s): read_pointing(results / "pointing" / m / f"{s}.csv", smoothings)
        for m in methods
        for s in splits
    }


def by_split(
    cells: dict[tuple[str, str], dict[str, Any]],
    methods: dict[str, dict[str, Any]],
    splits: list[str],
) -> list[dict[str, Any]]:
    """Rows of a wide table: per method its :func:`method_columns`, then per split (in order)
    each statistic of ``cells[method, split]`` as ``{split}_{statistic}``."""
    long = pd.DataFrame([{"name": m, "split": s, **cells[m, s]} for m in methods for s in splits])
    statistics = list(long.columns[2:])
    wide = long.pivot(index="name", columns="split").swaplevel(axis=1)
    wide = wide.reindex(
        index=list(methods), columns=pd.MultiIndex.from_product([splits, statistics])
    )
    wide.columns = [f"{split}_{statistic}" for split, statistic in wide.columns]
    first = pd.DataFrame([method_columns(m, e) for m, e in methods.items()], index=list(methods))
    return pd.concat([first, wide], axis=1).to_dict("records")


def method_columns(name: str, entry: dict[str, Any]) -> dict[str, str]:
    """The first columns of a table row: the config name and :func:`describe`'s three."""
    method, layer_type, heatmap = describe(entry)
    return {"name": name, "method": method, "layer_type": layer_type, "heatmap": heatmap}


@functools.cache
def _paper_model() -> Any:
    import torch

    from xiqa.model.network import build_model

    with torch.device("meta"):  # the module tree only
        return build_model(TrainConfig().arch)  # the recipe's defaults are the paper's


def _paper_layers(entry: dict[str, Any]) -> dict[str, Any]:
    """A method entry with its layers (given, aliases, or by default) as module names of the
    paper's ResNet-34, so that `layer: last` and `layer: layer4.2` are the same setup; an entry
    that does not resolve there stays as it is."""
    family = FAMILIES.get(entry.get("family"))
    if family is None or not family.takes_layers:
        return entry
    params = {k: v for k, v in entry.items() if k != "family"}
    try:
        return {"family": entry["family"], **family.resolve_layers("", _paper_model(), params)}
    except InputError:
        return entry


def describe(entry: dict[str, Any]) -> tuple[str, str, str]:
    """(method, layer type, heat-map) columns of Table 2 for a config entry."""
    family = entry["family"]
    if family == "normgrad":
        # One layer is "single"; several, or the alias of the combined set, "combined".
        layers = entry.get("layers", FAMILIES[family].defaults["layers"])
        return (
            "NormGrad",
            entry.get("virtual_layer", "conv1x1"),
            "single" if len(layers) == 1 and layers[0] != "combined" else "combined",
        )
    return (FAMILIES[family].label if family in FAMILIES else family), "–", "–"


def pointing_table(
    scores: dict[tuple[str, str], MethodResult],
    methods: dict[str, dict[str, Any]],
    splits: list[str],
    paper: bool,
) -> list[dict[str, Any]]:
    """Rows of the pointing table: accuracy, n, Wilson 95% CI, exact McNemar p against the best
    NormGrad method of the split (on the same images), share of tied peaks, paper value."""
    best = {}
    for split in splits:
        normgrad = [m for m in methods if methods[m]["family"] == "normgrad"]
        best[split] = max(normgrad, key=lambda m: scores[m, split].accuracy, default=None)
    cells = {}
    for name, entry in methods.items():
        for split in splits:
            result = scores[name, split]
            low, high = wilson_interval(sum(result.hits.values()), result.n)
            p = ""
            reference = best[split]
            if reference is not None and reference != name:
                other = scores[reference, split].hits
                shared = result.hits.keys() & other.keys()
                only_this = sum(result.hits[k] and not other[k] for k in shared)
                only_best = sum(other[k] and not result.hits[k] for k in shared)
                p = mcnemar_exact(only_this, only_best)
            # The paper's numbers sit beside the paper's method and beside its midl2021 version.
            published = PAPER_TABLE.get(name.removeprefix("midl2021-"), (None, None))
            same_setup = (
                paper
                and name in PRESETS
                and _paper_layers(PRESETS[name]) == _paper_layers(entry)
                and split in ("val", "test")
            )
            paper_value = published[("val", "test").index(split)] if same_setup else None
            cells[name, split] = {
                "accuracy": result.accuracy,
                "hits": sum(result.hits.values()),
                "n": result.n,
                "ci_low": low,
                "ci_high": high,
                "p_vs_best": p,
                "best_normgrad": reference or "",
                "tied_peaks": result.tied / result.n if result.n else math.nan,
                "paper": "" if paper_value is None else paper_value,
            }
    return by_split(cells, methods, splits)


def curve_taus(tau: float, factors: Sequence[float]) -> list[float]:
    """The pointing curve's tolerances: tau times each factor, and tau itself, ascending."""
    bad = [f for f in factors if not (math.isfinite(f) and f > 0)]
    if bad:
        raise InputError(f"--curve-factors: {bad[0]:g} is not a positive multiple of tau")
    return sorted({tau * f for f in factors} | {tau})


def pointing_curve(
    scores: dict[tuple[str, str], MethodResult], taus: list[float], tau: float
) -> list[dict[str, Any]]:
    """Pointing accuracy at each tolerance, re-thresholding the stored peak-to-box distances
    with the rule of the table (distance < tau, strict); at ``tau`` it is the table's value."""
    rows = []
    for (name, split), result in scores.items():
        for t in taus:
            rows.append(
                {
                    "name": name,
                    "split": split,
                    "tau": t,
                    "tau_factor": t / tau,
                    **_at_tolerance(result.distance, result.n, t),
                }
            )
    return rows


def _at_tolerance(distances: dict[str, float], n: int, tau: float) -> dict[str, Any]:
    """Hits (distance < tau, strictly), n, accuracy and its Wilson interval."""
    hits = int(np.count_nonzero(np.array(list(distances.values())) < tau))
    low, high = wilson_interval(hits, n)
    return {
        "hits": hits,
        "n": n,
        "accuracy": hits / n if n else math.nan,
        "ci_low": low,
        "ci_high": high,
    }


def pointing_variants(
    scores: dict[tuple[str, str], MethodResult],
    taus: Sequence[float],
    smoothings: Sequence[Smoothing] = (),
) -> list[dict[str, Any]]:
    """The pointing game's variants (the authors' follow-up study): accuracy with its Wilson
    interval per method, split, map (as scored, or after each smoothing) and tolerance, each
    re-thresholding the stored distances with the strict rule of the table."""
    variants = [(None, "none")] + [(s, s.suffix) for s in smoothings]
    rows = []
    for (name, split), result in scores.items():
        for smoothing, label in variants:
            distances = result.distance if smoothing is None else result.smoothed[label]
            for tau in taus:
                rows.append(
                    {
                        "name": name,
                        "split": split,
                        "smoothing": label,
                        "sigma": math.nan if smoothing is None else smoothing.sigma,
                        "kernel": "" if smoothing is None else smoothing.kernel,
                        "tau": tau,
                        **_at_tolerance(distances, result.n, tau),
                    }
                )
    return rows


def variants_markdown(
    rows: list[dict[str, Any]], methods: dict[str, dict[str, Any]], splits: list[str]
) -> str:
    """The variants wide: a row per method, a column per split, smoothing and tolerance."""
    keys = list(dict.fromkeys((r["smoothing"], r["tau"]) for r in rows))
    blur = {
        r["smoothing"]: f", σ = {r['sigma']:g} ({r['kernel']}×{r['kernel']} px)"
        for r in rows
        if r["smoothing"] != "none"
    }
    header = ["Method", "Layer type", "Heat-map"]
    header += [f"{s} τ = {t:g}{blur.get(g, '')}" for s in splits for g, t in keys]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 3 + "---:|" * (len(header) - 3)]
    cell = {(r["name"], r["split"], r["smoothing"], r["tau"]): r for r in rows}
    for name, entry in methods.items():
        cells = list(describe(entry))
        for split in splits:
            for smoothing, tau in keys:
                r = cell[name, split, smoothing, tau]
                cells.append(f"{_fmt(r['accuracy'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]")
        lines.append("| " + " | ".join(cells) + " |")
    n = {s: max((r["n"] for r in rows if r["split"] == s), default=0) for s in splits}
    notes = (
        "\nPointing game variants: accuracy [95% Wilson interval] at each tolerance τ (px in "
        "model-input space), on the maps as scored and after each Gaussian smoothing (σ px, on "
        "the kernel given, before the peak is taken); n = "
        + ", ".join(f"{n[s]} ({s})" for s in splits)
        + ". The column at the study's τ without smoothing is the pointing table's.\n"
    )
    return "\n".join(lines) + "\n" + notes


def energy_table(
    scores: dict[tuple[str, str], MethodResult],
    methods: dict[str, dict[str, Any]],
    splits: list[str],
) -> list[dict[str, Any]]:
    """Rows of the energy-based pointing table: per split, the mean share of map mass on box
    pixels with its 95% percentile-bootstrap interval, over the maps with positive mass (n);
    the maps without (no_mass); and the mean box area share, which a uniform map would score."""
    cells = {}
    for name in methods:
        for split in splits:
            result = scores[name, split]
            energy = np.array(list(result.energy.values()))
            defined = energy[np.isfinite(energy)]
            low, high = bootstrap_mean_ci(defined)
            cells[name, split] = {
                "energy": float(defined.mean()) if len(defined) else math.nan,
                "ci_low": low,
                "ci_high": high,
                "n": len(defined),
                "no_mass": len(energy) - len(defined),
                "box_share": (
                    float(np.mean(list(result.box_share.values()))) if result.n else math.nan
                ),
            }
    return by_split(cells, methods, splits)


# The md and tex tables are rendered here, not by DataFrame.to_markdown / to_latex: those need
# tabulate and jinja2 only for formatting, and tabulate pads every cell to its column's width.
def energy_markdown(rows: list[dict[str, Any]], splits: list[str]) -> str:
    header = ["Method", "Layer type", "Heat-map"]
    for split in splits:
        n = max((row[f"{split}_n"] for row in rows), default=0)
        header.append(f"{split} energy share [95% CI] (n = {n})")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 3 + "---:|" * len(splits)]
    for row in rows:
        cells = [row["method"], row["layer_type"], row["heatmap"]]
        for split in splits:
            n = max(r[f"{split}_n"] for r in rows)
            fewer = f" (n = {row[f'{split}_n']})" if row[f"{split}_n"] != n else ""
            cells.append(
                f"{_fmt(row[f'{split}_energy'])} [{_fmt(row[f'{split}_ci_low'])}, "
                f"{_fmt(row[f'{split}_ci_high'])}]{fewer}"
            )
        lines.append("| " + " | ".join(cells) + " |")
    uniform = ", ".join(f"{s} {_fmt(rows[0][f'{s}_box_share'])}" for s in splits) if rows else ""
    no_mass = sum(row[f"{s}_no_mass"] for row in rows for s in splits)
    notes = (
        "\nEnergy-based pointing game (Wang et al., Score-CAM, 2020): the mean share of each "
        "map's positive mass (negative values count as zero) on the pixels of the image's boxes, "
        "each pixel once, with 95% percentile-bootstrap intervals (2000 resamples). A uniform "
        f"map scores the boxes' area share: {uniform}."
        + (f" {no_mass} maps without positive mass are left out (n per row)." if no_mass else "")
        + "\n"
    )
    return "\n".join(lines) + "\n" + notes


def _fmt(value: Any, digits: int = 3) -> str:
    if value == "" or value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _p(value: Any) -> str:
    if value == "":
        return "best"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _common_n(rows: list[dict[str, Any]], split: str) -> int:
    """The number of images most methods were scored on (the column header's n)."""
    counts = [row[f"{split}_n"] for row in rows]
    return max(set(counts), key=counts.count) if counts else 0


def _accuracy_cell(row: dict[str, Any], split: str, common_n: int, dash: str = ", ") -> str:
    """Accuracy and its interval, with the method's own n where it differs from the column's
    (a method run on a subset, ``max_images``)."""
    cell = (
        f"{_fmt(row[f'{split}_accuracy'])} [{_fmt(row[f'{split}_ci_low'])}{dash}"
        f"{_fmt(row[f'{split}_ci_high'])}]"
    )
    n = row[f"{split}_n"]
    return cell if n == common_n else f"{cell} (n = {n})"


def pointing_markdown(rows: list[dict[str, Any]], splits: list[str], tau: float) -> str:
    paper = any(row[f"{s}_paper"] != "" for row in rows for s in splits)
    header = ["Method", "Layer type", "Heat-map"]
    for split in splits:
        n = _common_n(rows, split)
        header += [
            f"{split} accuracy [95% CI] (n = {n})",
            f"{split} p vs best NormGrad",
            f"{split} tied peaks",
        ]
    if paper:
        header += [f"paper {s}" for s in splits]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 3 + "---:|" * (len(header) - 3)]
    for row in rows:
        cells = [row["method"], row["layer_type"], row["heatmap"]]
        for split in splits:
            cells += [
                _accuracy_cell(row, split, _common_n(rows, split)),
                _p(row[f"{split}_p_vs_best"]),
                f"{_fmt(row[f'{split}_tied_peaks'] * 100, 0)}%",
            ]
        if paper:
            cells += [_fmt(row[f"{s}_paper"]) for s in splits]
        lines.append("| " + " | ".join(cells) + " |")
    notes = (
        f"\nPointing game accuracy, τ = {tau:g} px in model-input space. 95% Wilson "
        "intervals; p: exact McNemar test against the best NormGrad setting of the split "
        "on the same images; tied peaks: share of maps whose maximum several pixels share "
        "(the first in row-major order is the peak).\n"
    )
    return "\n".join(lines) + "\n" + notes


def _latex_escape(text: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
        ("×", r"$\times$"),
        ("–", "--"),
    ):
        text = text.replace(a, b)
    return text


def latex_table(caption: str, columns: str, head: str, body: list[str]) -> str:
    """A LaTeX ``table`` float: ``caption`` (LaTeX), tabular ``columns``, a ``head`` row and
    ``body`` rows (each ending in ``\\\\``), ruled above, below the head and at the end."""
    return "\n".join(
        [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{caption}}}",
            rf"\begin{{tabular}}{{{columns}}}",
            r"\hline",
            head + r" \\",
            r"\hline",
            *body,
            r"\hline",
            r"\end{tabular}",
            r"\end{table}",
            "",
        ]
    )


def pointing_latex(rows: list[dict[str, Any]], splits: list[str], tau: float) -> str:
    columns = "lll" + "r" * (2 * len(splits))
    head = " & ".join(
        ["Method", "Layer type", "Heat-map"]
        + [f"{s} (95\\% CI, n = {_common_n(rows, s)})" + " & p" for s in splits]
    )
    body = []
    for row in rows:
        cells = [_latex_escape(row[k]) for k in ("method", "layer_type", "heatmap")]
        for split in splits:
            cells.append(_accuracy_cell(row, split, _common_n(rows, split), "--"))
            cells.append(_latex_escape(_p(row[f"{split}_p_vs_best"])).replace("<", "$<$"))
        body.append(" & ".join(cells) + r" \\")
    caption = (
        rf"Pointing game accuracy ($\tau = {tau:g}$ px); p: exact McNemar test against the best "
        r"NormGrad setting."
    )
    return latex_table(caption, columns, head, body)


def _write_text(path: Path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    write_csv(pd.DataFrame(rows), path, na_rep="nan")


def classification_table(results: Path, splits: list[str]) -> tuple[list[dict], dict]:
    """Per split, the AUC and its interval as xiqa predict computed them
    (``predictions/{split}.json``); and those metrics with the ROC curves, for the figure."""
    rows, curves = [], {}
    for split in splits:
        metrics = read_classification_metrics(results / "predictions" / f"{split}.json")
        low, high = metrics.get("auc_ci95", (math.nan, math.nan))
        rows.append(
            {
                "split": split,
                "n": metrics["n"],
                "positives": metrics["positives"],
                "auc": metrics["auc"] if metrics["auc"] is not None else math.nan,
                "auc_ci_low": low,
                "auc_ci_high": high,
            }
        )
        curves[split] = metrics
    return rows, curves


def aggregate(
    results: str | os.PathLike,
    methods: dict[str, dict[str, Any]],
    splits: list[str],
    tau: float,
    paper: bool = False,
    curve_factors: Sequence[float] = DEFAULT_CURVE_FACTORS,
    caches: str | os.PathLike | None = None,
    extra_taus: Sequence[float] = (),
    smoothings: Sequence[Smoothing] = (),
) -> None:
    """Write under results/tables: pointing_game.{csv,md,tex}, pointing_curve.csv,
    pointing_variants.{csv,md} (at tau and ``extra_taus``, on the maps as scored and after each
    of ``smoothings``), energy_pointing.{csv,md}, classification.{csv,md} and
    sanity_randomisation.csv (from
    results/sanity/{method}.csv); and the figures under results/figures (the examples from the
    image caches in ``caches``, by default results/cache)."""
    from xiqa.evaluation.figures import make_figures, pointing_curve_figure, sanity_figure

    results = Path(results)
    if not methods:
        raise InputError("no methods to aggregate")
    taus = curve_taus(tau, curve_factors)
    bad = [t for t in extra_taus if not (math.isfinite(t) and t > 0)]
    if bad:
        raise InputError(f"--extra-taus: {bad[0]:g} is not a positive tolerance")
    scores = read_scores(results, methods, splits, smoothings)
    sanity = {m: read_sanity(results / "sanity" / f"{m}.csv") for m in methods}
    rows = pointing_table(scores, methods, splits, paper)
    curve = pointing_curve(scores, taus, tau)
    variants = pointing_variants(scores, list(dict.fromkeys([tau, *extra_taus])), smoothings)
    energy = energy_table(scores, methods, splits)
    sanity_rows = sanity_table(sanity)
    auc_rows, curves = classification_table(results, splits)
    predictions = read_predictions(results / "predictions" / f"{splits[-1]}.csv")  # figures'
    lines = ["| split | n | positives | AUC [95% bootstrap CI] |", "|---|---:|---:|---|"]
    lines += [
        f"| {r['split']} | {r['n']} | {r['positives']} | {_fmt(r['auc'])} "
        f"[{_fmt(r['auc_ci_low'])}, {_fmt(r['auc_ci_high'])}] |"
        for r in auc_rows
    ]
    with staged_outputs(results) as stage:  # all tables and figures, or none
        tables, figures = stage / "tables", stage / "figures"
        _write_csv(tables / "pointing_game.csv", rows)
        _write_text(tables / "pointing_game.md", pointing_markdown(rows, splits, tau))
        _write_text(tables / "pointing_game.tex", pointing_latex(rows, splits, tau))
        _write_csv(tables / "pointing_curve.csv", curve)
        _write_csv(tables / "pointing_variants.csv", variants)
        _write_text(tables / "pointing_variants.md", variants_markdown(variants, methods, splits))
        _write_csv(tables / "energy_pointing.csv", energy)
        _write_text(tables / "energy_pointing.md", energy_markdown(energy, splits))
        _write_csv(tables / "sanity_randomisation.csv", sanity_rows)
        _write_csv(tables / "classification.csv", auc_rows)
        _write_text(tables / "classification.md", "\n".join(lines) + "\n")
        caches = None if caches is None else Path(caches)
        make_figures(
            results, methods, splits, rows, curves, scores, predictions, tau, figures, caches
        )
        pointing_curve_figure(figures, curve, splits, tau)
        sanity_figure(figures, sanity_rows, methods)


def sanity_table(sanity: dict[str, list[tuple[str, np.ndarray]]]) -> list[dict[str, Any]]:
    """Per method and stage of the randomisation cascade: the Spearman correlations' mean, SD
    and number of images where it is defined."""
    return [
        {"name": name, "stage_index": index, "stage": stage, **summarise(correlations)}
        for name, stages in sanity.items()
        for index, (stage, correlations) in enumerate(stages)
    ]
