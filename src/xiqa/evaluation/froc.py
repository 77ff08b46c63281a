"""The Object-CXR challenge's FROC for saliency maps (docs/protocol.md §7.4): ``xiqa froc``
turns each map's peaks into the challenge's point predictions; :func:`froc` scores them as the
challenge's script does.

Predictions: the local maxima of the min–max scaled map v (a pixel no lower than its 8
neighbours), taken greedily by value (ties in row-major order, so the first is the pointing
game's peak), each more than ``radius`` pixels (Euclidean) from those already taken, at most
``top_k`` per image, none at the map's minimum; each becomes the centre of its pixel in original
coordinates (:func:`xiqa.data.geometry.input_to_original`, as ``xiqa explain`` reports peaks),
scored by ``score_rule``: ``prob-x-relative`` (default) P(foreign object) × v at the peak, so an
image's first peak carries the classifier's probability and weaker peaks less; ``prob``: P for
every peak; ``relative``: v alone (the map without the classifier).

Scoring, as the challenge's ``froc.py``: predictions of all images sorted by score, highest
first, ties in file order (a stable sort); a prediction inside an object of its image (the
rules of :mod:`xiqa.data.geometry`) hits every such object not hit before and is never a false
positive, even when all of them were hit before; a prediction inside none is a false positive.
After each prediction, when false positives / images reaches the next of the rates
0.125, 0.25, 0.5, 1, 2, 4, 8, the sensitivity (objects hit / objects) is recorded for it, one
rate per prediction; rates never reached take the last recorded value (0 when none was).
The FROC is the mean of the seven. Images count whether or not they have an object.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from xiqa.data.annotation import Shape
from xiqa.data.cache import ImageCache, load_cache
from xiqa.data.geometry import contains, input_to_original
from xiqa.errors import InputError
from xiqa.evaluation.localisation import relative
from xiqa.evaluation.pointing import method_maps
from xiqa.evaluation.tables import _fmt, _latex_escape, _p, _write_csv, _write_text, latex_table
from xiqa.io import read_csv, staged_outputs, write_csv

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
SCORE_RULES = ("prob-x-relative", "prob", "relative")
LOCALIZATION_CSV = "prediction_localization.csv"
CLASSIFICATION_CSV = "prediction_classification.csv"
# The supervised baseline of the challenge (JF Healthcare): a detector trained on the boxes.
SUPERVISED_BASELINE = {"froc": 0.803, "auc": 0.921}


def sensitivity_column(rate: float) -> str:
    return f"sensitivity_{rate:g}"


def find_peaks(saliency_map: np.ndarray, radius: float, top_k: int) -> list[tuple[int, int, float]]:
    """(x, y, v) of up to ``top_k`` peaks of a map after non-maximum suppression; v is the
    min–max scaled value at the peak (1 for the first). Pixels at the map's minimum are never
    peaks (but every pixel of a constant map is a candidate)."""
    v = relative(saliency_map)
    # Local maxima: no lower than any of the 8 neighbours (plateaus included); the suppression
    # radius then acts in the greedy pass, so the maximum filter stays 3x3 (fast at 600 px).
    highest = ndimage.maximum_filter(v, size=3, mode="constant", cval=-np.inf)
    # Row-major order; the map's minimum is no peak (a flat background), unless it is constant.
    candidates = np.flatnonzero((v == highest) & ((v > 0) | (v == 1)))
    candidates = candidates[np.argsort(-v.flat[candidates], kind="stable")]
    width = v.shape[1]
    taken: list[tuple[int, int, float]] = []
    for flat in candidates:
        y, x = divmod(int(flat), width)
        if all((x - tx) ** 2 + (y - ty) ** 2 > radius**2 for tx, ty, _ in taken):
            taken.append((x, y, float(v[y, x])))
            if len(taken) == top_k:
                break
    return taken


def peak_score(prob: float, value: float, rule: str) -> float:
    if rule == "prob-x-relative":
        return prob * value
    if rule == "prob":
        return prob
    if rule == "relative":
        return value
    raise InputError(f"--score {rule!r}: unknown score rule; use {', '.join(SCORE_RULES)}")


def run_froc_predictions(
    images_path: str | os.PathLike,
    shard_paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    model_path: str | os.PathLike | None = None,
    radius: float = 6.0,
    top_k: int = 3,
    score_rule: str = "prob-x-relative",
) -> int:
    """Write the challenge's ``prediction_localization.csv`` and ``prediction_classification.csv``
    into the folder ``out`` (both or neither) from one method's shards, which must hold a map of
    every image of the cache. Returns the number of point predictions."""
    if score_rule not in SCORE_RULES:
        raise InputError(
            f"--score {score_rule!r}: unknown score rule; use {', '.join(SCORE_RULES)}"
        )
    if not (math.isfinite(radius) and radius >= 0):
        raise InputError(f"--radius {radius}: the suppression radius must be 0 or more pixels")
    if top_k < 1:
        raise InputError(f"--top-k {top_k}: keep at least one peak per image")
    cache = load_cache(images_path, with_images=False)
    points: dict[int, str] = {}
    probs: dict[int, float] = {}
    for shard, k, index in method_maps(cache, shard_paths, model_path, "froc"):
        prob = float(shard.prob[k])
        if not np.isfinite(shard.maps[k]).all():
            raise InputError(
                f"{shard.path}: map of {shard.image_name[k]!r}: saliency map has NaN or "
                "infinite values"
            )
        found = find_peaks(shard.maps[k], radius, top_k)
        width, height = int(cache.width[index]), int(cache.height[index])
        predictions = []
        for x, y, value in found:
            ox, oy = input_to_original(x, y, cache.size, width, height)
            predictions.append((peak_score(prob, value, score_rule), ox, oy))
        # Within an image, highest score first (stable: suppression order on ties).
        predictions.sort(key=lambda p: -p[0])
        points[index] = ";".join(f"{s!r} {x!r} {y!r}" for s, x, y in predictions)
        probs[index] = prob
    missing = [cache.image_name[i] for i in range(len(cache)) if i not in points]
    if missing:
        raise InputError(
            f"the FROC needs a map of every image of {cache.path}; the shards lack "
            f"{len(missing)} (first {missing[0]!r}): explain all images (xiqa saliency "
            "--all-images; the workflow's froc.methods)"
        )
    names = cache.image_name
    with staged_outputs(out) as stage:
        write_csv(
            pd.DataFrame(
                {"image_path": names, "prediction": [points[i] for i in range(len(names))]}
            ),
            stage / LOCALIZATION_CSV,
        )
        write_csv(
            pd.DataFrame(
                {"image_path": names, "prediction": [repr(probs[i]) for i in range(len(names))]}
            ),
            stage / CLASSIFICATION_CSV,
        )
    return sum(p.count(";") + 1 for p in points.values() if p)


@dataclass
class Predictions:
    """Point predictions as the challenge reads them, in file order."""

    image: np.ndarray  # (P,) index into the ground truth's images
    prob: np.ndarray  # (P,) float64
    x: np.ndarray
    y: np.ndarray


def read_localization(path: str | os.PathLike, image_names: Sequence[str]) -> Predictions:
    """A ``prediction_localization.csv`` parsed as the challenge's script parses it (a header,
    then ``image_path,prediction`` with ``prob x y`` separated by ``;``); every image must be
    one of ``image_names`` (the split's) and appear once."""
    frame = read_csv(path, "FROC predictions")
    if list(frame.columns) != ["image_path", "prediction"]:
        raise InputError(f"{path}: header must be image_path,prediction")
    where = {name: i for i, name in enumerate(image_names)}
    image, prob, xs, ys = [], [], [], []
    seen: set[str] = set()
    for line, (name, prediction) in enumerate(frame.itertuples(index=False), start=2):
        if name not in where:
            raise InputError(f"{path}: line {line}: {name!r} is not an image of the split")
        if name in seen:
            raise InputError(f"{path}: line {line}: {name!r} appears twice")
        seen.add(name)
        if prediction == "":
            continue
        for point in prediction.split(";"):
            fields = point.split(" ")
            try:
                p, x, y = (float(f) for f in fields)
            except ValueError:
                raise InputError(
                    f"{path}: line {line}: {point!r} is not 'probability x y'"
                ) from None
            image.append(where[name])
            prob.append(p)
            xs.append(x)
            ys.append(y)
    return Predictions(np.array(image, int), np.array(prob), np.array(xs), np.array(ys))


@dataclass
class GroundTruth:
    """A split's objects: each image's shapes (original pixels)."""

    image_names: list[str]
    shapes: list[list[Shape]]

    @classmethod
    def from_cache(cls, cache: ImageCache) -> GroundTruth:
        try:
            shapes = [cache.shapes_of(i) for i in range(len(cache))]
        except ValueError as exc:
            raise InputError(f"{cache.path}: an annotation does not parse ({exc})") from None
        return cls(list(cache.image_name), shapes)

    @property
    def n_objects(self) -> int:
        return sum(len(s) for s in self.shapes)


def hit_pairs(truth: GroundTruth, predictions: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, object) index pairs: prediction p lies inside object o of its image
    (objects numbered image by image, in annotation order)."""
    first_object = np.concatenate([[0], np.cumsum([len(s) for s in truth.shapes])])
    pairs_p, pairs_o = [], []
    for i, shapes in enumerate(truth.shapes):
        mine = np.flatnonzero(predictions.image == i)
        if not len(mine) or not shapes:
            continue
        for j, shape in enumerate(shapes):
            inside = mine[contains(shape, predictions.x[mine], predictions.y[mine])]
            pairs_p.append(inside)
            pairs_o.append(np.full(len(inside), first_object[i] + j))
    if not pairs_p:
        return np.zeros(0, int), np.zeros(0, int)
    return np.concatenate(pairs_p), np.concatenate(pairs_o)


@dataclass
class FrocResult:
    froc: float
    sensitivities: tuple[float, ...]  # at FP_RATES
    fp_per_image: np.ndarray  # the curve: after each prediction, in score order
    sensitivity: np.ndarray


def froc_from_pairs(
    prob: np.ndarray,
    pairs: tuple[np.ndarray, np.ndarray],
    n_images: int,
    n_objects: int,
    rates: Sequence[float] = FP_RATES,
) -> FrocResult:
    """The challenge's FROC of predictions (``prob`` in file order) given which objects each
    lies inside (``pairs``, as :func:`hit_pairs`)."""
    if n_objects == 0:
        nan = (math.nan,) * len(rates)
        return FrocResult(math.nan, nan, np.zeros(0), np.zeros(0))
    order = np.argsort(-prob, kind="stable")
    position = np.empty(len(prob), dtype=np.int64)
    position[order] = np.arange(len(prob))
    pred, obj = pairs
    inside_any = np.zeros(len(prob), dtype=bool)
    inside_any[pred] = True
    first_hit = np.full(n_objects, len(prob), dtype=np.int64)  # len: never hit
    np.minimum.at(first_hit, obj, position[pred])
    new_hits = np.bincount(first_hit[first_hit < len(prob)], minlength=len(prob))
    hits = np.cumsum(new_hits)
    false_positives = np.cumsum(~inside_any[order])
    ratio = false_positives / n_images  # the script's float division
    sensitivity = hits / n_objects
    recorded: list[float] = []
    last = -1
    for rate in rates:
        at = max(last + 1, int(np.searchsorted(ratio, rate, side="left")))
        if at >= len(prob):
            break
        recorded.append(float(sensitivity[at]))
        last = at
    padded = recorded + [recorded[-1] if recorded else 0.0] * (len(rates) - len(recorded))
    return FrocResult(float(np.mean(padded)), tuple(padded), ratio, sensitivity)


def froc(truth: GroundTruth, predictions: Predictions) -> FrocResult:
    """The challenge's FROC of ``predictions`` against ``truth``."""
    pairs = hit_pairs(truth, predictions)
    return froc_from_pairs(predictions.prob, pairs, len(truth.image_names), truth.n_objects)


def _expand(starts: np.ndarray, draw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For groups ``starts[i]:starts[i + 1]`` of a sorted array and a resample ``draw`` of the
    groups: the indices of the resample's members, copy by copy; each member's copy; and each
    copy's first position in the resample."""
    counts = starts[draw + 1] - starts[draw]
    block_start = np.cumsum(counts) - counts
    members = np.repeat(starts[draw] - block_start, counts) + np.arange(counts.sum())
    return members, np.repeat(np.arange(len(draw)), counts), block_start


def bootstrap_frocs(
    truth: GroundTruth,
    predictions: Sequence[Predictions],
    n_boot: int = 1000,
    seed: int = 0,
    draws: np.ndarray | None = None,
    pairs: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray:
    """(n_boot, M) FROCs of M methods' predictions on the same resamples of the images (drawn
    with replacement; a copy of an image brings copies of its objects and its predictions, in
    the resample's order), for intervals and paired comparisons. ``draws`` (B, N) gives the
    resamples' image indices instead of drawing them."""
    n = len(truth.image_names)
    object_count = np.array([len(s) for s in truth.shapes], dtype=np.int64)
    first_object = np.concatenate([[0], np.cumsum(object_count)])
    prepared = []
    if pairs is None:
        pairs = [hit_pairs(truth, pred) for pred in predictions]
    for pred, (pair_p, pair_o) in zip(predictions, pairs, strict=True):
        by_image = np.argsort(pred.image, kind="stable")  # file order within an image
        starts = np.searchsorted(pred.image[by_image], np.arange(n + 1))
        rank = np.empty(len(by_image), dtype=np.int64)  # a prediction's place in its image
        rank[by_image] = np.arange(len(by_image)) - starts[pred.image[by_image]]
        pair_image = pred.image[pair_p]
        by_pair = np.argsort(pair_image, kind="stable")
        pair_starts = np.searchsorted(pair_image[by_pair], np.arange(n + 1))
        local_object = (pair_o - first_object[pair_image])[by_pair]
        prepared.append((pred, by_image, starts, rank[pair_p][by_pair], local_object, pair_starts))
    if draws is None:
        draws = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    values = np.empty((len(draws), len(predictions)))
    for b, draw in enumerate(draws):
        copy_first = np.cumsum(object_count[draw]) - object_count[draw]
        n_objects = int(object_count[draw].sum())
        for m, (pred, by_image, starts, pair_rank, local_object, pair_starts) in enumerate(
            prepared
        ):
            members, _, block_start = _expand(starts, draw)
            pairs, copy, _ = _expand(pair_starts, draw)
            resampled = (
                block_start[copy] + pair_rank[pairs],
                copy_first[copy] + local_object[pairs],
            )
            prob = pred.prob[by_image[members]]
            values[b, m] = froc_from_pairs(prob, resampled, n, n_objects).froc
    return values


def froc_table(
    results: str | os.PathLike,
    methods: Sequence[str],
    splits: Sequence[str],
    n_boot: int = 1000,
    caches: str | os.PathLike | None = None,
) -> tuple[list[dict[str, object]], dict[tuple[str, str], FrocResult]]:
    """One row per method and split: the FROC, the seven sensitivities, a 95% percentile
    bootstrap interval of the FROC and a paired bootstrap p-value against the split's best
    method (the same resamples), from ``froc/{method}/{split}/prediction_localization.csv``
    and the split's cache (in ``caches``, by default results/cache); and each method's
    :class:`FrocResult` per split (for the figure)."""
    results = Path(results)
    caches = results / "cache" if caches is None else Path(caches)
    rows, curves = [], {}
    for split in splits:
        cache = load_cache(caches / f"{split}.h5", with_images=False)
        truth = GroundTruth.from_cache(cache)
        predictions = [
            read_localization(results / "froc" / m / split / LOCALIZATION_CSV, truth.image_names)
            for m in methods
        ]
        pairs = [hit_pairs(truth, p) for p in predictions]  # the shape tests, once per method
        n_images, n_objects = len(truth.image_names), truth.n_objects
        scored = [
            froc_from_pairs(p.prob, hits, n_images, n_objects)
            for p, hits in zip(predictions, pairs, strict=True)
        ]
        boot = bootstrap_frocs(truth, predictions, n_boot=n_boot, pairs=pairs)
        values = np.array([r.froc for r in scored])
        if not np.isfinite(values).any():
            raise InputError(f"{cache.path}: the split has no annotated object to find")
        best = int(np.nanargmax(values))
        for m, (method, result) in enumerate(zip(methods, scored, strict=True)):
            curves[method, split] = result
            low, high = np.nanpercentile(boot[:, m], [2.5, 97.5]) if n_boot else (math.nan,) * 2
            diff = boot[:, m] - boot[:, best]
            if m == best:
                p = ""
            elif n_boot:  # twice the smaller tail share of the paired differences
                p = float(min(1.0, 2 * min(np.mean(diff >= 0), np.mean(diff <= 0))))
            else:
                p = math.nan
            rows.append(
                {
                    "method": method,
                    "split": split,
                    "froc": result.froc,
                    **{
                        sensitivity_column(r): s
                        for r, s in zip(FP_RATES, result.sensitivities, strict=True)
                    },
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "p_vs_best": p,
                    "best": methods[best],
                    "n_images": len(truth.image_names),
                    "n_objects": truth.n_objects,
                    "n_predictions": len(predictions[m].prob),
                }
            )
    return rows, curves


def froc_markdown(rows: list[dict[str, object]], splits: Sequence[str]) -> str:
    rates = " | ".join(f"@{r:g}" for r in FP_RATES)
    lines = []
    for split in splits:
        mine = [r for r in rows if r["split"] == split]
        if not mine:
            continue
        lines += [
            f"### {split} (n = {mine[0]['n_images']} images, {mine[0]['n_objects']} objects)",
            "",
            f"| Method | FROC [95% CI] | p vs best | {rates} |",
            "|---|---:|---:|" + "---:|" * len(FP_RATES),
        ]
        for row in mine:
            sens = " | ".join(_fmt(row[sensitivity_column(r)]) for r in FP_RATES)
            lines.append(
                f"| {row['method']} | {_fmt(row['froc'])} [{_fmt(row['ci_low'])}, "
                f"{_fmt(row['ci_high'])}] | {_p(row['p_vs_best'])} | {sens} |"
            )
        lines.append("")
    lines.append(
        "The Object-CXR challenge's FROC of each map's peaks as point predictions (local maxima "
        "after non-maximum suppression, scored by P(foreign object) × the peak's share of the "
        "map's range unless the config says otherwise): the mean sensitivity at 0.125, 0.25, "
        "0.5, 1, 2, 4 and 8 false positives per image, over every image of the split; 95% "
        "percentile-bootstrap intervals and paired bootstrap p-values against the split's best "
        "method (images resampled). For reference, the challenge's supervised detector (JF "
        f"Healthcare) reached FROC {SUPERVISED_BASELINE['froc']} on its test set: it was trained "
        "on the boxes, a different task from explaining a classifier."
    )
    return "\n".join(lines) + "\n"


def froc_latex(rows: list[dict[str, object]]) -> str:
    body = [
        f"{_latex_escape(str(r['method']))} & {r['split']} & {_fmt(r['froc'])} "
        f"[{_fmt(r['ci_low'])}--{_fmt(r['ci_high'])}] & "
        + " & ".join(_fmt(r[sensitivity_column(x)]) for x in FP_RATES)
        + r" \\"
        for r in rows
    ]
    caption = (
        r"FROC of the saliency maps' peaks (the Object-CXR challenge's metric) with 95\% "
        r"bootstrap intervals, and the sensitivity at each rate of false positives per image."
    )
    columns = "ll" + "r" * (1 + len(FP_RATES))
    head = "Method & Split & FROC & " + " & ".join(f"{r:g}" for r in FP_RATES)
    return latex_table(caption, columns, head, body)


def write_froc_tables(
    results: str | os.PathLike,
    methods: Sequence[str],
    splits: Sequence[str],
    n_boot: int = 1000,
    caches: str | os.PathLike | None = None,
) -> None:
    """Write results/tables/froc.{csv,md,tex} and results/figures/froc.{png,pdf} (all or none)
    from ``froc/{method}/{split}/prediction_localization.csv`` and the splits' caches."""
    from xiqa.evaluation.figures import froc_figure

    if not methods:
        raise InputError("no methods for the FROC")
    results = Path(results)
    rows, results_of = froc_table(results, methods, splits, n_boot, caches)
    curves = {k: (r.fp_per_image, r.sensitivity, r.sensitivities) for k, r in results_of.items()}
    with staged_outputs(results) as stage:
        _write_csv(stage / "tables" / "froc.csv", rows)
        _write_text(stage / "tables" / "froc.md", froc_markdown(rows, splits))
        _write_text(stage / "tables" / "froc.tex", froc_latex(rows))
        froc_figure(
            stage / "figures",
            curves,
            list(methods),
            list(splits),
            FP_RATES,
            SUPERVISED_BASELINE["froc"],
        )
