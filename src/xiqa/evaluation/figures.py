"""Figures of the study, each as PNG (for the report) and PDF (for papers).

- ``examples``: Figure-2-style rows for the images with the most objects: the X-ray with its
  ground-truth boxes, then each compared method's map over the X-ray with its peak (a circle of
  radius tau: green when it hits, red when it misses).
- ``failures``: where the main NormGrad method misses.
- ``misclassified``: positive images the classifier called clean (P < 0.5), with the map.
- ``pointing_accuracy``: accuracy per method and split with 95% Wilson intervals.
- ``roc``: ROC curves per split with AUC and bootstrap interval.
- ``pointing_curve``: pointing accuracy against the tolerance, per method and split.
- ``sanity_randomisation``: the model-parameter randomisation test, mean Spearman correlation
  with the trained model's maps as the model is randomised from the output down.
- ``audit`` (``xiqa audit-table``): the paper audit, accuracy per method and variant.
- ``localisation_by_size`` (``xiqa localisation-table``): pointing, hit-in-shape and mIoU by
  object size.
- ``froc`` (``xiqa froc-table``): the challenge's FROC curve of the maps' peaks.
- ``consistency`` (``xiqa consistency``): each method's pointing accuracy on each model of a
  study of several, its range and mean.
Maps use a perceptually uniform colour map (inferno), half transparent over the X-ray.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Circle, Rectangle  # noqa: E402

from xiqa.data.cache import load_cache  # noqa: E402
from xiqa.evaluation.shards import read_maps  # noqa: E402
from xiqa.io import atomic_output  # noqa: E402
from xiqa.saliency import FAMILIES  # noqa: E402

if TYPE_CHECKING:
    from xiqa.evaluation.tables import MethodResult

FIGURE_NAMES = (
    "examples",
    "failures",
    "misclassified",
    "pointing_accuracy",
    "roc",
    "pointing_curve",
    "sanity_randomisation",
)
PANEL_METHODS = ("normgrad-conv1x1-single", "gradcam", "normgrad-conv1x1-combined")
GALLERY = 8


def _save(figure, folder: Path, name: str) -> None:
    for suffix in ("png", "pdf"):
        with atomic_output(folder / f"{name}.{suffix}") as tmp:
            figure.savefig(tmp, format=suffix, dpi=150, bbox_inches="tight")
    plt.close(figure)


def _xray(ax, image: np.ndarray, boxes: np.ndarray) -> None:
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    for x0, y0, x1, y1 in boxes:
        ax.add_patch(
            Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="#00e5ff", linewidth=1.2)
        )
    ax.set_axis_off()


def _overlay(ax, image, boxes, saliency, result: MethodResult, name, tau, title) -> None:
    """The map over the X-ray; for a counted image its peak, circled green (hit) or red."""
    _xray(ax, image, boxes)
    span = saliency.max() - saliency.min()
    scaled = (saliency - saliency.min()) / span if span > 0 else np.zeros_like(saliency)
    ax.imshow(scaled, cmap="inferno", alpha=0.5, vmin=0, vmax=1)
    if name in result.hits:
        colour = "#39ff14" if result.hits[name] else "#ff3030"
        x, y = result.peak[name]
        ax.add_patch(Circle((x, y), tau, fill=False, edgecolor=colour, linewidth=1.5))
        ax.plot([x], [y], marker="+", color=colour, markersize=8, markeredgewidth=1.5)
        title += " — hit" if result.hits[name] else " — miss"
    ax.set_title(title, fontsize=8)


class _Split:
    """The figures' split: its cache, read once, and each method's maps of the images shown,
    read once per method."""

    def __init__(self, results: Path, split: str, wanted: dict[str, set[str]], caches: Path):
        self.cache = load_cache(caches / f"{split}.h5")
        self.index = {name: i for i, name in enumerate(self.cache.image_name)}
        self.maps = {
            m: read_maps(sorted((results / "saliency" / m / split).glob("*.h5")), names)
            for m, names in wanted.items()
        }

    def image(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        i = self.index[name]
        return self.cache.images[i], self.cache.boxes_of(i)


def _rows_figure(shown: _Split, scores, split, names, methods, tau, folder) -> None:
    """Figure-2 layout: per image, the X-ray with its boxes, then one overlay per method."""
    figure, axes = plt.subplots(
        len(names),
        1 + len(methods),
        squeeze=False,
        figsize=(2.2 * (1 + len(methods)), 2.3 * len(names)),
    )
    for r, name in enumerate(names):
        image, boxes = shown.image(name)
        _xray(axes[r, 0], image, boxes)
        axes[r, 0].set_title(f"{name} ({len(boxes)} objects)", fontsize=8)
        for c, method in enumerate(methods, start=1):
            if name in shown.maps[method]:
                result = scores[method, split]
                _overlay(
                    axes[r, c], image, boxes, shown.maps[method][name], result, name, tau, method
                )
            else:
                axes[r, c].set_axis_off()
    figure.tight_layout()
    _save(figure, folder, "examples")


def _gallery(shown, result, names, method, tau, heading, empty, name, folder) -> None:
    """Overlays of one method's maps, four to a row; a figure saying ``empty`` when none."""
    if not names:
        figure, ax = plt.subplots(figsize=(4, 0.8))
        ax.text(0.5, 0.5, empty, ha="center", va="center")
        ax.set_axis_off()
        _save(figure, folder, name)
        return
    columns = min(4, len(names))
    count = -(-len(names) // columns)
    figure, axes = plt.subplots(
        count, columns, squeeze=False, figsize=(2.4 * columns, 2.5 * count + 0.3)
    )
    for ax in axes.flat[len(names) :]:
        ax.set_axis_off()
    for ax, image_name in zip(axes.flat, names, strict=False):
        image, boxes = shown.image(image_name)
        saliency = shown.maps[method][image_name]
        _overlay(ax, image, boxes, saliency, result, image_name, tau, image_name)
    figure.suptitle(heading, fontsize=9)
    figure.tight_layout()
    _save(figure, folder, name)


def make_figures(
    results: Path,
    methods: dict[str, dict[str, Any]],
    splits: list[str],
    table: list[dict[str, Any]],
    curves: dict[str, dict],
    scores: dict[tuple[str, str], MethodResult],
    predictions: pd.DataFrame,
    tau: float,
    folder: Path,
    caches: Path | None = None,
) -> None:
    """Every figure of the study into ``folder``, from the tables, the per-image pointing
    results (``scores``), the last split's ``predictions``, and that split's cache (in
    ``caches``, by default results/cache) and maps."""
    split = splits[-1]  # the test split when there is one
    panel = [m for m in PANEL_METHODS if m in methods] or list(methods)[:3]
    main = next((m for m in panel if methods[m]["family"] == "normgrad"), panel[0])

    result = scores[main, split]
    most = sorted(result.hits, key=lambda n: (-result.n_boxes[n], n))[:4]
    misses = [n for n, hit in result.hits.items() if not hit][:GALLERY]
    called_clean = (predictions["label"] == 1) & (predictions["prob"] < 0.5)
    missed = predictions["image_name"][called_clean & predictions["image_name"].isin(result.images)]
    missed = missed.tolist()[:GALLERY]
    wanted = {m: set(most) for m in panel}
    wanted[main] |= {*misses, *missed}
    # No image to show: no cache or maps read (as for a study without a counted image).
    caches = results / "cache" if caches is None else caches
    shown = _Split(results, split, wanted, caches) if wanted[main] else None
    if most:
        _rows_figure(shown, scores, split, most, panel, tau, folder)
    _gallery(
        shown,
        result,
        misses,
        main,
        tau,
        f"{main} misses ({split})",
        f"{main} hits every image of {split}.",
        "failures",
        folder,
    )
    _gallery(
        shown,
        result,
        missed,
        main,
        tau,
        f"positive images called clean ({split}), {main} maps",
        f"No misclassified positive image in {split}.",
        "misclassified",
        folder,
    )

    figure, ax = plt.subplots(figsize=(max(5, 0.7 * len(table) * len(splits)), 3.5))
    width = 0.8 / len(splits)
    x = np.arange(len(table))
    for k, s in enumerate(splits):
        acc = np.array([row[f"{s}_accuracy"] for row in table])
        low = np.clip(acc - np.array([row[f"{s}_ci_low"] for row in table]), 0, None)
        high = np.clip(np.array([row[f"{s}_ci_high"] for row in table]) - acc, 0, None)
        ax.bar(
            x + k * width,
            acc,
            width,
            yerr=[low, high],
            capsize=2,
            label=s,
            color=plt.cm.viridis(0.25 + 0.5 * k / max(1, len(splits) - 1)),
        )
    ax.set_xticks(
        x + width * (len(splits) - 1) / 2,
        [row["name"] for row in table],
        rotation=40,
        ha="right",
        fontsize=7,
    )
    ax.set_ylabel(f"pointing accuracy (τ = {tau:g} px)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, folder, "pointing_accuracy")

    figure, ax = plt.subplots(figsize=(3.8, 3.6))
    for k, (s, metrics) in enumerate(curves.items()):
        if metrics["auc"] is None:
            continue
        low, high = metrics["auc_ci95"]
        ax.plot(
            metrics["roc_fpr"],
            metrics["roc_tpr"],
            color=plt.cm.viridis(0.2 + 0.6 * k / max(1, len(curves) - 1)),
            label=f"{s}: AUC {metrics['auc']:.3f} [{low:.3f}, {high:.3f}]",
        )
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    _save(figure, folder, "roc")


def _method_colours(names: list[str]) -> dict[str, Any]:
    palette = plt.cm.tab20 if len(names) > 10 else plt.cm.tab10
    return {name: palette(k % palette.N) for k, name in enumerate(names)}


def _method_line_styles(names: list[str]) -> dict[str, str]:
    """Solid for the first 20 methods, then dashed, then dotted: colours repeat after 20."""
    return {name: ("-", "--", ":")[k // plt.cm.tab20.N % 3] for k, name in enumerate(names)}


def _method_line(ax, x, y, name: str, colours: dict, styles: dict, **style) -> None:
    """One method's line in its colour and dash style, labelled for the legend."""
    style = {"linewidth": 1.2, **style}
    ax.plot(x, y, color=colours[name], linestyle=styles[name], label=name, **style)


def pointing_curve_figure(
    folder: Path, curve: list[dict[str, Any]], splits: list[str], tau: float
) -> None:
    """Accuracy against tolerance, one panel per split, one line per method; a dashed line at
    the table's tau."""
    names = list(dict.fromkeys(row["name"] for row in curve))
    colours, styles = _method_colours(names), _method_line_styles(names)
    figure, axes = plt.subplots(
        1, len(splits), squeeze=False, sharey=True, figsize=(4 * len(splits) + 2.2, 3.6)
    )
    for ax, split in zip(axes[0], splits, strict=True):
        for name in names:
            rows = [r for r in curve if r["name"] == name and r["split"] == split]
            x, y = [r["tau"] for r in rows], [r["accuracy"] for r in rows]
            _method_line(ax, x, y, name, colours, styles, marker=".", markersize=4)
        ax.axvline(tau, color="grey", linestyle="--", linewidth=1)
        ax.set_title(split, fontsize=9)
        ax.set_xlabel("tolerance τ (px)")
        ax.set_ylim(0, 1.02)
        ax.set_xlim(left=0)
    axes[0, 0].set_ylabel("pointing accuracy")
    axes[0, -1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.tight_layout()
    _save(figure, folder, "pointing_curve")


# The sanity figure's panel for each kind of family (xiqa.saliency.registry.KINDS).
PANEL_OF_KIND = {"normgrad": "NormGrad", "cam": "CAM methods"}


def _panel_of(family: str) -> str:
    kind = FAMILIES[family].kind if family in FAMILIES else None
    return PANEL_OF_KIND.get(kind, "gradient and perturbation methods")


def sanity_figure(
    folder: Path, table: list[dict[str, Any]], methods: dict[str, dict[str, Any]]
) -> None:
    """Mean Spearman correlation (band: ± 1 SD over images) against the stage the model is
    randomised down to, one line per method, one panel per kind of method (NormGrad, CAMs,
    gradient and perturbation methods); a method whose maps are constant has no line."""
    names = list(dict.fromkeys(row["name"] for row in table))
    stages = list(dict.fromkeys(row["stage"] for row in table))
    panels: dict[str, list[str]] = {}
    for name in names:
        panels.setdefault(_panel_of(methods[name]["family"]), []).append(name)
    figure, axes = plt.subplots(
        1,
        len(panels),
        figsize=(len(panels) * max(3.2, 0.4 * len(stages) + 1.2), 4.6),
        sharey=True,
        squeeze=False,
    )
    for ax, (title, members) in zip(axes[0], panels.items(), strict=True):
        colours = _method_colours(members)
        for name in members:
            rows = [r for r in table if r["name"] == name]
            x = np.array([stages.index(r["stage"]) for r in rows])
            mean = np.array([r["mean"] for r in rows], dtype=float)
            sd = np.nan_to_num(np.array([r["sd"] for r in rows], dtype=float))
            label = name if np.isfinite(mean).any() else f"{name} (constant maps)"
            ax.plot(
                x, mean, marker="o", markersize=3, linewidth=1.2, color=colours[name], label=label
            )
            ax.fill_between(x, mean - sd, mean + sd, color=colours[name], alpha=0.08, linewidth=0)
        ax.axhline(0, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xticks(range(len(stages)), stages, rotation=40, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("randomised from the output down to", fontsize=8)
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.5), ncol=1)
    axes[0][0].set_ylabel("Spearman correlation of |maps|\nwith the trained model's")
    axes[0][0].set_ylim(min(-0.1, axes[0][0].get_ylim()[0]), 1.05)
    figure.tight_layout()
    _save(figure, folder, "sanity_randomisation")


def audit_figure(folder: Path, table: list[dict[str, Any]], splits: list[str]) -> None:
    """The paper audit (``xiqa audit-table``): one panel per method, one row per variant, the
    accuracy per split with its 95% Wilson interval; ``correct`` and ``all`` in bold, the
    paper's published value (on ``all``) as a cross."""
    methods = list(dict.fromkeys(row["method"] for row in table))
    counts = [sum(row["method"] == m for row in table) for m in methods]
    figure, axes = plt.subplots(
        len(methods),
        1,
        squeeze=False,
        sharex=True,
        figsize=(5.5, 0.9 + 0.32 * sum(counts) + 0.35 * len(methods)),
        gridspec_kw={"height_ratios": [max(1, c) for c in counts]},
    )
    offset = 0.16 if len(splits) > 1 else 0.0
    for ax, method in zip(axes[:, 0], methods, strict=True):
        rows = [row for row in table if row["method"] == method]
        y = np.arange(len(rows))[::-1]  # the first variant on top
        for k, split in enumerate(splits):
            shift = offset * (1 - 2 * k / max(1, len(splits) - 1)) if offset else 0.0
            acc = np.array([row[f"{split}_accuracy"] for row in rows], dtype=float)
            low = np.array([row[f"{split}_ci_low"] for row in rows], dtype=float)
            high = np.array([row[f"{split}_ci_high"] for row in rows], dtype=float)
            colour = plt.cm.viridis(0.25 + 0.5 * k / max(1, len(splits) - 1))
            ax.errorbar(
                acc,
                y + shift,
                xerr=[np.clip(acc - low, 0, None), np.clip(high - acc, 0, None)],
                fmt="o",
                markersize=4,
                capsize=2,
                color=colour,
                label=split,
            )
            published = [
                (row[f"paper_{split}"], yy + shift)
                for row, yy in zip(rows, y, strict=True)
                if row.get(f"paper_{split}", "") not in ("", None)
            ]
            if published:
                ax.plot(
                    [float(v) for v, _ in published],
                    [yy for _, yy in published],
                    marker="x",
                    linestyle="none",
                    markersize=7,
                    color=colour,
                    label=f"paper {split}",
                )
        ax.set_yticks(y, [row["variant"] for row in rows], fontsize=7)
        for label in ax.get_yticklabels():
            if label.get_text() in ("correct", "all"):
                label.set_fontweight("bold")
        for row, yy in zip(rows, y, strict=True):
            if row["variant"] in ("correct", "all"):
                ax.axhspan(yy - 0.45, yy + 0.45, color="#f0f0f0", zorder=0)
        ax.set_title(method, fontsize=8, loc="left")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.6, len(rows) - 0.4)
    axes[-1, 0].set_xlabel("pointing accuracy (95% Wilson interval); ×: the paper's (600 px, τ 25)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for ax in axes[1:, 0]:  # the paper's crosses may only appear on a later panel
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    axes[0, 0].legend(handles, labels, fontsize=6, loc="lower left", bbox_to_anchor=(1.01, 0))
    figure.tight_layout()
    _save(figure, folder, "audit")


def size_figure(
    folder: Path,
    rows: list[dict[str, Any]],
    names: list[str],
    splits: list[str],
    bounds: tuple[float, float],
) -> None:
    """Localisation by object size: a row of panels per split (pointing accuracy, hit-in-shape,
    mIoU by Otsu with the shapes), object size on x, one line per method."""
    from xiqa.evaluation.localisation import SIZE_NAMES

    colours, styles = _method_colours(names), _method_line_styles(names)
    metrics = (
        ("pointing", "pointing accuracy"),
        ("hit_shape", "hit-in-shape"),
        ("miou_otsu", "mIoU"),
    )
    figure, axes = plt.subplots(
        len(splits), 3, squeeze=False, sharex=True, sharey="col", figsize=(11.5, 3.2 * len(splits))
    )
    ticks = [
        f"small\n< {bounds[0]:.1%}",
        f"medium\n{bounds[0]:.1%}–{bounds[1]:.1%}",
        f"large\n> {bounds[1]:.1%}",
    ]
    for r, split in enumerate(splits):
        for c, (key, label) in enumerate(metrics):
            ax = axes[r, c]
            for name in names:
                mine = [
                    next(
                        row
                        for row in rows
                        if row["name"] == name and row["split"] == split and row["size"] == size
                    )
                    for size in SIZE_NAMES
                ]
                y = [row[key] for row in mine]
                _method_line(
                    ax, range(len(SIZE_NAMES)), y, name, colours, styles, marker="o", markersize=3
                )
            counts = [
                max(
                    (row["n"] for row in rows if row["split"] == split and row["size"] == s),
                    default=0,
                )
                for s in SIZE_NAMES
            ]
            ax.set_title(f"{split}: {label} (n = {', '.join(map(str, counts))})", fontsize=8)
            if key != "miou_otsu":  # shares of images; mIoU keeps its own (smaller) scale
                ax.set_ylim(0, 1.02)
            else:
                top = max((r[key] for r in rows if np.isfinite(r[key])), default=1.0)
                ax.set_ylim(0, max(top, 0.01) * 1.08)
            ax.set_xticks(range(len(SIZE_NAMES)), ticks, fontsize=7)
    for r in range(len(splits)):
        axes[r, 0].set_ylabel("share of images", fontsize=8)
        axes[r, 2].set_ylabel("mean IoU", fontsize=8)
    axes[0, -1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    figure.tight_layout()
    _save(figure, folder, "localisation_by_size")


def froc_figure(
    folder: Path,
    curves: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, tuple[float, ...]]],
    names: list[str],
    splits: list[str],
    rates: tuple[float, ...],
    baseline: float,
) -> None:
    """The FROC curve (sensitivity against false positives per image, log scale) per split, one
    line per method, the challenge's seven operating points marked; a dotted line at the
    supervised detector's FROC."""
    colours, styles = _method_colours(names), _method_line_styles(names)
    figure, axes = plt.subplots(
        1, len(splits), squeeze=False, sharey=True, figsize=(4.2 * len(splits) + 2.4, 3.8)
    )
    for ax, split in zip(axes[0], splits, strict=True):
        for name in names:
            fp, sensitivity, at_rates = curves[name, split]
            keep = fp > 0
            ax.step(
                fp[keep],
                sensitivity[keep],
                where="post",
                linewidth=1.1,
                color=colours[name],
                linestyle=styles[name],
                label=name,
            )
            ax.plot(
                rates, at_rates, linestyle="none", marker="o", markersize=2.5, color=colours[name]
            )
        ax.axhline(baseline, color="black", linestyle=":", linewidth=1)
        ax.text(rates[0], baseline + 0.015, f"supervised detector, FROC {baseline:.3f}", fontsize=6)
        ax.set_xscale("log", base=2)
        ax.set_xlim(rates[0] / 1.5, rates[-1] * 1.5)
        ax.set_xticks(rates, [f"{r:g}" for r in rates], fontsize=7)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("false positives per image")
        ax.set_title(split, fontsize=9)
    axes[0, 0].set_ylabel("sensitivity (objects hit)")
    axes[0, -1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.tight_layout()
    _save(figure, folder, "froc")


def consistency_figure(
    folder: Path,
    rows: list[dict[str, Any]],
    ranking: list[dict[str, Any]],
    models: Any,
    splits: list[str],
    tau: float,
) -> None:
    """``xiqa consistency``: one panel per split, one line per method (sorted by its mean
    accuracy over the models), each model's pointing accuracy as a dot (colour: architecture;
    marker: the model within it), the range over the models as a grey bar and the mean as a
    tick; Kendall's W of all models in the title."""
    archs = list(dict.fromkeys(m.arch for m in models))
    colours = {a: plt.cm.tab10(k % 10) for k, a in enumerate(archs)}
    markers = "os^Dv<>p*h"
    within = {}
    for m in models:
        within[m.name] = sum(o.arch == m.arch for o in models[: list(models).index(m)])
    n_methods = len({r["name"] for r in rows})
    figure, axes = plt.subplots(
        1, len(splits), squeeze=False, sharex=True, figsize=(4.2 * len(splits), 1 + 0.3 * n_methods)
    )
    for ax, split in zip(axes[0], splits, strict=True):
        split_rows = sorted((r for r in rows if r["split"] == split), key=lambda r: r["mean"])
        y = np.arange(len(split_rows))
        ax.hlines(
            y, [r["min"] for r in split_rows], [r["max"] for r in split_rows], color="0.8", lw=4
        )
        ax.plot([r["mean"] for r in split_rows], y, "|", color="black", markersize=10)
        for m in models:
            ax.plot(
                [r[f"acc_{m.name}"] for r in split_rows],
                y,
                linestyle="none",
                marker=markers[within[m.name] % len(markers)],
                markersize=4,
                color=colours[m.arch],
                alpha=0.85,
                label=f"{m.name} ({m.arch})",
            )
        ax.set_yticks(y, [r["name"] for r in split_rows], fontsize=7)
        w = next((r for r in ranking if r["split"] == split and r["models"] == "all"), None)
        title = split if w is None else f"{split}: Kendall's W {w['kendall_w']:.2f}"
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel(f"pointing accuracy (τ = {tau:g} px)", fontsize=8)
        ax.grid(axis="x", color="0.92")
    axes[0, -1].legend(fontsize=6, loc="lower left", bbox_to_anchor=(1.01, 0))
    figure.tight_layout()
    _save(figure, folder, "consistency")
