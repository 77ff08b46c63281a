"""Localisation beyond one peak (docs/protocol.md §7): hit-in-shape, segmentation IoU with the
true shapes and with the boxes, by object size; and ``xiqa localisation``.

Per image, in the model-input space, from a method's shards (maps are never recomputed):
- the **true shapes** are rasterised at S×S by :func:`xiqa.data.geometry.shape_masks` (a pixel
  belongs to a shape when its centre lies inside it); the **boxes** are the pointing game's box
  pixels (:func:`xiqa.evaluation.pointing.box_mask`);
- **hit-in-shape** (CheXlocalize's hit rate): the peak, the first maximum in row-major order as
  in the pointing game, lies on a pixel of the union of the true shapes (no tolerance);
- **IoU**: the map, min–max scaled to v in [0, 1], becomes a binary mask by Otsu's threshold
  (v > t, t from a 256-bin histogram of v, as scikit-image's ``threshold_otsu``) or by a fraction
  f of its range (v >= f, for each f of a grid, so that a table can also tune f on val and apply
  it to test); the IoU of that mask with the union of the shapes, and with the union of the boxes.
  A constant map (no range) highlights every pixel: its mask is the whole image, under every rule.

An image counts for the shape metrics when its shapes cover some pixel centre, and for the box
IoU when its boxes cover a pixel (the pointing game's ``counted``); negatives count for neither.
The **object size** of an image is the share of its pixels in the union of its true shapes
(``shape_share``); the tables class it small, medium or large by their bounds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xiqa.data.cache import load_cache
from xiqa.data.geometry import shape_masks
from xiqa.errors import InputError
from xiqa.evaluation.pointing import box_mask, method_maps, peak
from xiqa.evaluation.stats import (
    bootstrap_mean_ci,
    mcnemar_exact,
    wilcoxon_signed_rank,
    wilson_interval,
)
from xiqa.evaluation.tables import (
    _common_n,
    _fmt,
    _latex_escape,
    _p,
    _write_csv,
    _write_text,
    by_split,
    latex_table,
)
from xiqa.io import numeric_columns, read_results_csv, staged_outputs, write_csv

# Fractions of a map's range whose masks every image's row carries (0.05, 0.10, ..., 0.95).
DEFAULT_FRACTIONS = tuple(round(k / 20, 2) for k in range(1, 20))
# Object size by the share of the image's pixels in its true shapes: small below the first
# bound, medium up to the second, large above (docs/protocol.md §7.5).
DEFAULT_SIZE_BOUNDS = (0.002, 0.006)
SIZE_NAMES = ("small", "medium", "large")
BASE_COLUMNS = (
    "image_name",
    "label",
    "prob",
    "n_shapes",
    "counted_shapes",
    "counted_boxes",
    "shape_share",
    "peak_x",
    "peak_y",
    "hit_shape",
    "otsu_threshold",
    "otsu_share",
    "iou_otsu_shapes",
    "iou_otsu_boxes",
)


def fraction_columns(fraction: float) -> tuple[str, str]:
    """The per-image CSV's columns of the IoU at one fraction of the range: shapes, boxes."""
    return f"iou_shapes_f{fraction:g}", f"iou_boxes_f{fraction:g}"


def relative(saliency_map: np.ndarray) -> np.ndarray:
    """The map min–max scaled to [0, 1] (float64); a constant map becomes all ones."""
    values = np.asarray(saliency_map, dtype=np.float64)
    low, high = values.min(), values.max()
    if not high > low:
        return np.ones_like(values)
    return (values - low) / (high - low)


def otsu_threshold(values: np.ndarray, nbins: int = 256) -> float:
    """Otsu's threshold of ``values``: the histogram bin centre (``nbins`` bins over the values'
    range) that maximises the between-class variance, as ``skimage.filters.threshold_otsu``
    computes it (which tests hold it to); a constant array's threshold is its value."""
    flat = np.asarray(values).ravel()
    if np.all(flat == flat[0]):
        return float(flat[0])
    counts, edges = np.histogram(flat, bins=nbins, range=(flat.min(), flat.max()))
    centres = (edges[:-1] + edges[1:]) / 2
    counts = counts.astype(np.float32)
    weight1 = np.cumsum(counts)
    weight2 = np.cumsum(counts[::-1])[::-1]
    mean1 = np.cumsum(counts * centres) / weight1
    with np.errstate(divide="ignore", invalid="ignore"):  # empty classes at the ends
        mean2 = (np.cumsum((counts * centres)[::-1]) / weight2[::-1])[::-1]
    variance = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    return float(centres[np.nanargmax(variance)])


def otsu_mask(v: np.ndarray) -> tuple[np.ndarray, float]:
    """(mask, threshold): the pixels of a min–max scaled map above Otsu's threshold; a constant
    map (all ones) highlights every pixel."""
    threshold = otsu_threshold(v)
    if np.all(v == v.flat[0]):
        return np.ones(v.shape, dtype=bool), threshold
    return v > threshold, threshold


def fraction_mask(v: np.ndarray, fraction: float) -> np.ndarray:
    """The pixels of a min–max scaled map at or above ``fraction`` of its range."""
    return v >= fraction


def iou(mask: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks; NaN when both are empty."""
    union = np.count_nonzero(mask | truth)
    if union == 0:
        return math.nan
    return np.count_nonzero(mask & truth) / union


def size_class(share: float, bounds: Sequence[float] = DEFAULT_SIZE_BOUNDS) -> str:
    """small, medium or large by the shapes' area share (bounds: small < b0 <= medium <= b1 <
    large)."""
    low, high = bounds
    if share < low:
        return "small"
    return "medium" if share <= high else "large"


def check_size_bounds(bounds: Sequence[float]) -> tuple[float, float]:
    bounds = tuple(float(b) for b in bounds)
    if len(bounds) != 2 or not 0 < bounds[0] < bounds[1] < 1:
        raise InputError(
            f"--size-bounds {','.join(f'{b:g}' for b in bounds)}: need two area shares "
            "0 < small/medium < medium/large < 1"
        )
    return bounds


def check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    bad = [f for f in fractions if not 0 < f < 1]
    if bad or not fractions:
        raise InputError(
            f"--fractions: {bad[0]:g} is not a fraction of the range in (0, 1)"
            if bad
            else "--fractions: give at least one fraction"
        )
    return tuple(sorted(set(float(f) for f in fractions)))


def image_row(
    saliency_map: np.ndarray,
    shapes: np.ndarray,
    boxes: np.ndarray,
    fractions: Sequence[float],
) -> dict[str, object]:
    """One image's localisation values: ``shapes`` (K, S, S) the true-shape masks, ``boxes``
    (K, 4) in map pixels."""
    shape_union = shapes.any(axis=0) if len(shapes) else np.zeros(saliency_map.shape, bool)
    box_union = box_mask(boxes, saliency_map.shape)
    counted_shapes, counted_boxes = bool(shape_union.any()), bool(box_union.any())
    x, y, _ = peak(saliency_map)
    v = relative(saliency_map)
    otsu, threshold = otsu_mask(v)
    share = float(shape_union.mean())
    row: dict[str, object] = {
        "n_shapes": len(shapes),
        "counted_shapes": int(counted_shapes),
        "counted_boxes": int(counted_boxes),
        "shape_share": share if counted_shapes else math.nan,
        "peak_x": x,
        "peak_y": y,
        "hit_shape": int(shape_union[y, x]) if counted_shapes else None,
        "otsu_threshold": threshold,
        "otsu_share": float(otsu.mean()),
        "iou_otsu_shapes": iou(otsu, shape_union) if counted_shapes else math.nan,
        "iou_otsu_boxes": iou(otsu, box_union) if counted_boxes else math.nan,
    }
    for fraction in fractions:
        mask = fraction_mask(v, fraction)
        shapes_column, boxes_column = fraction_columns(fraction)
        row[shapes_column] = iou(mask, shape_union) if counted_shapes else math.nan
        row[boxes_column] = iou(mask, box_union) if counted_boxes else math.nan
    return row


def run_localisation(
    images_path: str | os.PathLike,
    shard_paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    model_path: str | os.PathLike | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> dict[str, float]:
    """Score every map of one method's shards against the cache's true shapes and boxes; write
    the per-image CSV. The shards are checked as ``xiqa pointing`` checks them."""
    fractions = check_fractions(fractions)
    cache = load_cache(images_path, with_images=False)
    rows = []
    for shard, k, index in method_maps(cache, shard_paths, model_path, "localisation"):
        try:
            shapes = cache.shapes_of(index)
        except ValueError as exc:  # an annotation the manifest check would have refused
            raise InputError(f"{cache.path}: row {index}: {exc}") from None
        masks = shape_masks(shapes, int(cache.width[index]), int(cache.height[index]), cache.size)
        try:
            values = image_row(shard.maps[k], masks, cache.boxes_of(index), fractions)
        except ValueError as exc:
            raise InputError(f"{shard.path}: map of {shard.image_name[k]!r}: {exc}") from None
        rows.append(
            {
                "image_name": shard.image_name[k],
                "label": int(cache.label[index]),
                "prob": float(shard.prob[k]),
                **values,
            }
        )
    columns = list(BASE_COLUMNS) + [c for f in fractions for c in fraction_columns(f)]
    frame = pd.DataFrame(rows, columns=columns).astype({"hit_shape": "Int64"})
    write_csv(frame, out)
    counted = frame[frame["counted_shapes"] == 1]
    return {
        "n": len(counted),
        "hits": int(counted["hit_shape"].sum()),
        "miou": float(counted["iou_otsu_shapes"].mean()) if len(counted) else math.nan,
    }


# --- Tables: xiqa localisation-table -----------------------------------------------------------


def read_localisation(path: str | os.PathLike) -> pd.DataFrame:
    """One method's per-image CSV of one split (``xiqa localisation``), numbers as numbers."""
    frame = read_results_csv(path, "localisation results", BASE_COLUMNS, "xiqa localisation")
    numbers = [c for c in frame.columns if c != "image_name"]
    optional = [c for c in numbers if c not in ("label", "counted_shapes", "counted_boxes")]
    values = numeric_columns(frame, numbers, path, "not an xiqa localisation row", optional)
    return pd.concat([frame[["image_name"]], values], axis=1).set_index("image_name")


def _grid(frame: pd.DataFrame, kind: str) -> dict[float, str]:
    """The fraction -> column of the per-image IoU grid of ``kind`` (shapes or boxes)."""
    prefix = f"iou_{kind}_f"
    return {float(c.removeprefix(prefix)): c for c in frame.columns if c.startswith(prefix)}


def _mean_cell(values: pd.Series) -> dict[str, float]:
    values = values.dropna()
    low, high = bootstrap_mean_ci(values.to_numpy())
    return {"mean": float(values.mean()) if len(values) else math.nan, "low": low, "high": high}


def localisation_table(
    frames: dict[tuple[str, str], pd.DataFrame],
    methods: dict[str, dict[str, Any]],
    splits: list[str],
    fraction: float,
) -> list[dict[str, Any]]:
    """Rows per method, columns per split: hit-in-shape (Wilson interval; exact McNemar against
    the split's best), mIoU by Otsu with the shapes (bootstrap interval; Wilcoxon signed-rank
    against the split's best) and with the boxes, at ``fraction`` of the range, and at the
    fraction tuned on val (the one maximising val's mIoU with the shapes) applied to each split.
    """
    tuned: dict[str, float] = {}
    for name in methods:
        if "val" in splits:
            val = frames[name, "val"]
            counted = val[val["counted_shapes"] == 1]
            grid = _grid(val, "shapes")
            means = {f: counted[c].mean() for f, c in grid.items()}
            if means and any(np.isfinite(list(means.values()))):
                # The smallest fraction among equal bests: a stated, repeatable choice.
                tuned[name] = max(sorted(means), key=lambda f: np.nan_to_num(means[f], nan=-1))
    cells = {}
    for split in splits:
        counted = {}
        for name in methods:
            frame = frames[name, split]
            counted[name] = frame[frame["counted_shapes"] == 1]
        best_hit = max(methods, key=lambda m: np.nan_to_num(counted[m]["hit_shape"].mean()))
        best_iou = max(methods, key=lambda m: np.nan_to_num(counted[m]["iou_otsu_shapes"].mean()))
        for name in methods:
            mine = counted[name]
            hits, n = int(mine["hit_shape"].sum()), len(mine)
            low, high = wilson_interval(hits, n)
            p_hit = p_iou = ""
            if name != best_hit:
                other = counted[best_hit]["hit_shape"]
                shared = mine.index.intersection(other.index)
                a, b = mine.loc[shared, "hit_shape"], other.loc[shared]
                p_hit = mcnemar_exact(
                    int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
                )
            if name != best_iou:
                other = counted[best_iou]["iou_otsu_shapes"]
                shared = mine.index.intersection(other.index)
                p_iou = wilcoxon_signed_rank(mine.loc[shared, "iou_otsu_shapes"], other.loc[shared])
            otsu = _mean_cell(mine["iou_otsu_shapes"])
            boxes = frames[name, split]
            boxes = _mean_cell(boxes[boxes["counted_boxes"] == 1]["iou_otsu_boxes"])
            grid = _grid(mine, "shapes")
            if fraction not in grid:
                raise InputError(
                    f"--fraction {fraction:g} is not on the per-image grid of {name} "
                    f"({', '.join(f'{f:g}' for f in grid)})"
                )
            fixed = _mean_cell(mine[grid[fraction]])
            at_tuned = _mean_cell(mine[grid[tuned[name]]]) if name in tuned else None
            cells[name, split] = {
                "hit_shape": hits / n if n else math.nan,
                "hits": hits,
                "n": n,
                "hit_ci_low": low,
                "hit_ci_high": high,
                "hit_p_vs_best": p_hit,
                "best_hit": best_hit,
                "miou_otsu": otsu["mean"],
                "miou_otsu_ci_low": otsu["low"],
                "miou_otsu_ci_high": otsu["high"],
                "miou_p_vs_best": p_iou,
                "best_miou": best_iou,
                "miou_otsu_boxes": boxes["mean"],
                "miou_otsu_boxes_ci_low": boxes["low"],
                "miou_otsu_boxes_ci_high": boxes["high"],
                "fraction": fraction,
                "miou_fraction": fixed["mean"],
                "miou_fraction_ci_low": fixed["low"],
                "miou_fraction_ci_high": fixed["high"],
                "tuned_fraction": tuned.get(name, math.nan),
                "miou_tuned": at_tuned["mean"] if at_tuned else math.nan,
                "miou_tuned_ci_low": at_tuned["low"] if at_tuned else math.nan,
                "miou_tuned_ci_high": at_tuned["high"] if at_tuned else math.nan,
                "mask_share": float(mine["otsu_share"].mean()) if n else math.nan,
            }
    return by_split(cells, methods, splits)


def size_table(
    frames: dict[tuple[str, str], pd.DataFrame],
    pointing: dict[tuple[str, str], dict[str, int]],
    methods: dict[str, dict[str, Any]],
    splits: list[str],
    bounds: Sequence[float] = DEFAULT_SIZE_BOUNDS,
) -> list[dict[str, Any]]:
    """Long rows (method, split, size class by ``bounds``): pointing accuracy (the pointing
    game's hits of the images of that size), hit-in-shape and mIoU by Otsu with the shapes,
    with intervals."""
    rows = []
    for name in methods:
        for split in splits:
            frame = frames[name, split]
            counted = frame[frame["counted_shapes"] == 1]
            sizes = counted["shape_share"].map(lambda share: size_class(share, bounds))
            hits_of = pointing[name, split]
            for size in SIZE_NAMES:
                group = counted[sizes == size]
                point = [hits_of[n] for n in group.index if n in hits_of]
                point_low, point_high = wilson_interval(sum(point), len(point))
                hit_low, hit_high = wilson_interval(int(group["hit_shape"].sum()), len(group))
                miou = _mean_cell(group["iou_otsu_shapes"])
                rows.append(
                    {
                        "name": name,
                        "split": split,
                        "size": size,
                        "n": len(group),
                        "pointing": sum(point) / len(point) if point else math.nan,
                        "pointing_n": len(point),
                        "pointing_ci_low": point_low,
                        "pointing_ci_high": point_high,
                        "hit_shape": float(group["hit_shape"].mean()) if len(group) else math.nan,
                        "hit_ci_low": hit_low,
                        "hit_ci_high": hit_high,
                        "miou_otsu": miou["mean"],
                        "miou_ci_low": miou["low"],
                        "miou_ci_high": miou["high"],
                    }
                )
    return rows


def _ci(row: dict[str, Any], key: str, low: str, high: str, dash: str = ", ") -> str:
    return f"{_fmt(row[key])} [{_fmt(row[low])}{dash}{_fmt(row[high])}]"


def localisation_markdown(
    rows: list[dict[str, Any]], splits: list[str], bounds: Sequence[float]
) -> str:
    header = ["Method", "Layer type", "Heat-map"]
    for split in splits:
        n = _common_n(rows, split)
        header += [
            f"{split} hit-in-shape [95% CI] (n = {n})",
            "p",
            f"{split} mIoU Otsu, shapes [95% CI]",
            "p",
            f"{split} mIoU Otsu, boxes",
            f"{split} mIoU at f",
            f"{split} mIoU at f tuned on val",
        ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 3 + "---:|" * (len(header) - 3)]
    for row in rows:
        cells = [row["method"], row["layer_type"], row["heatmap"]]
        for s in splits:
            n = row[f"{s}_n"]
            own = "" if n == _common_n(rows, s) else f" (n = {n})"
            cells += [
                _ci(row, f"{s}_hit_shape", f"{s}_hit_ci_low", f"{s}_hit_ci_high") + own,
                _p(row[f"{s}_hit_p_vs_best"]),
                _ci(row, f"{s}_miou_otsu", f"{s}_miou_otsu_ci_low", f"{s}_miou_otsu_ci_high"),
                _p(row[f"{s}_miou_p_vs_best"]),
                _fmt(row[f"{s}_miou_otsu_boxes"]),
                f"{_fmt(row[f'{s}_miou_fraction'])} (f = {row[f'{s}_fraction']:g})",
                (
                    f"{_fmt(row[f'{s}_miou_tuned'])} (f = {row[f'{s}_tuned_fraction']:g})"
                    if np.isfinite(row[f"{s}_tuned_fraction"])
                    else "–"
                ),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = (
        "\nHit-in-shape (CheXlocalize's hit rate): the map's peak (the first maximum in "
        "row-major order) lies on a pixel of the union of the image's true shapes (a pixel "
        "belongs to a shape when its centre lies inside it); 95% Wilson intervals; p: exact "
        "McNemar test against the split's best method on the same images. mIoU: the mean over "
        "images of the IoU between the map's mask and the union of the true shapes (or of the "
        "pointing game's box pixels); the mask holds the pixels of the min–max scaled map above "
        "Otsu's threshold, or at or above a fraction f of its range; 95% percentile-bootstrap "
        "intervals; p: Wilcoxon signed-rank test against the split's best mIoU. The tuned f "
        "maximises val's mIoU with the shapes (so val's value at it is optimistic; test's is "
        f"not). Object sizes (results/tables/localisation_by_size.md): small below "
        f"{bounds[0]:.2%} of the image, large above {bounds[1]:.2%}.\n"
    )
    return "\n".join(lines) + "\n" + notes


def localisation_latex(rows: list[dict[str, Any]], splits: list[str]) -> str:
    columns = "lll" + "r" * (3 * len(splits))
    head = " & ".join(
        ["Method", "Layer type", "Heat-map"]
        + [f"{s} hit (n = {_common_n(rows, s)}) & {s} mIoU Otsu & {s} mIoU boxes" for s in splits]
    )
    body = []
    for row in rows:
        cells = [_latex_escape(row[k]) for k in ("method", "layer_type", "heatmap")]
        for s in splits:
            cells += [
                _ci(row, f"{s}_hit_shape", f"{s}_hit_ci_low", f"{s}_hit_ci_high", "--"),
                _ci(row, f"{s}_miou_otsu", f"{s}_miou_otsu_ci_low", f"{s}_miou_otsu_ci_high", "--"),
                _fmt(row[f"{s}_miou_otsu_boxes"]),
            ]
        body.append(" & ".join(cells) + r" \\")
    caption = (
        r"Hit-in-shape (peak on a true shape) and mIoU of the Otsu-thresholded map with the true "
        r"shapes and with the boxes; 95\% intervals."
    )
    return latex_table(caption, columns, head, body)


def size_markdown(
    rows: list[dict[str, Any]],
    methods: dict[str, dict[str, Any]],
    splits: list[str],
    bounds: Sequence[float],
) -> str:
    lines = []
    for split in splits:
        mine = [r for r in rows if r["split"] == split]
        counts = {
            size: max((r["n"] for r in mine if r["size"] == size), default=0) for size in SIZE_NAMES
        }
        header = ["Method"] + [
            f"{size} (n = {counts[size]}) {metric}"
            for size in SIZE_NAMES
            for metric in ("pointing", "hit-in-shape", "mIoU")
        ]
        lines += [f"### {split}", ""]
        lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
        for name in methods:
            cells = [name]
            for size in SIZE_NAMES:
                row = next(r for r in mine if r["name"] == name and r["size"] == size)
                cells += [_fmt(row["pointing"]), _fmt(row["hit_shape"]), _fmt(row["miou_otsu"])]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(
        f"Images by the share of their pixels in the union of their true shapes: small below "
        f"{bounds[0]:.2%}, medium up to {bounds[1]:.2%}, large above. Pointing: the pointing "
        "game's accuracy on those images; hit-in-shape and mIoU (Otsu, shapes) as in "
        "localisation.md; intervals in localisation_by_size.csv."
    )
    return "\n".join(lines) + "\n"


def write_localisation_tables(
    results: str | os.PathLike,
    methods: dict[str, dict[str, Any]],
    splits: list[str],
    fraction: float = 0.5,
    size_bounds: Sequence[float] | None = None,
) -> None:
    """Write results/tables/localisation.{csv,md,tex}, localisation_by_size.{csv,md} and
    results/figures/localisation_by_size.{png,pdf} (all or none) from
    ``localisation/{method}/{split}.csv`` and ``pointing/{method}/{split}.csv``."""
    from xiqa.evaluation.figures import size_figure
    from xiqa.evaluation.tables import read_pointing

    results = Path(results)
    if not methods:
        raise InputError("no methods to tabulate")
    bounds = check_size_bounds(DEFAULT_SIZE_BOUNDS if size_bounds is None else size_bounds)
    frames = {
        (m, s): read_localisation(results / "localisation" / m / f"{s}.csv")
        for m in methods
        for s in splits
    }
    pointing = {
        (m, s): read_pointing(results / "pointing" / m / f"{s}.csv").hits
        for m in methods
        for s in splits
    }
    rows = localisation_table(frames, methods, splits, fraction)
    sizes = size_table(frames, pointing, methods, splits, bounds)
    with staged_outputs(results) as stage:
        tables = stage / "tables"
        _write_csv(tables / "localisation.csv", rows)
        _write_text(tables / "localisation.md", localisation_markdown(rows, splits, bounds))
        _write_text(tables / "localisation.tex", localisation_latex(rows, splits))
        _write_csv(tables / "localisation_by_size.csv", sizes)
        _write_text(
            tables / "localisation_by_size.md", size_markdown(sizes, methods, splits, bounds)
        )
        size_figure(stage / "figures", sizes, list(methods), splits, bounds)
