"""Faithfulness of saliency maps (docs/protocol.md, "Faithfulness"): deletion and insertion
(Petsiuk et al., RISE, BMVC 2018), ROAD (Rong et al., ICML 2022), their chance baselines (a
random and a uniform map), ``xiqa faithfulness`` and ``xiqa faithfulness-table``.

Everything happens in the model-input space, on the grey S×S image as floats in [0, 1] BEFORE
:func:`~xiqa.model.network.to_model_input` normalises and replicates it: a perturbed grey image
stays one grey image replicated to three channels.

- **Order.** Pixels by descending saliency; ties keep row-major order (a stable sort of −map
  over the flattened row-major index: the pointing game's rule, the first maximum comes first).
  A uniform map is removed in row-major order.
- **Deletion / insertion.** Step k = 0 … n_steps perturbs the first m_k = round(k·S²/n_steps)
  pixels of the order (halves rounded up). Deletion replaces them in the image by the deletion
  baseline; insertion starts from the insertion baseline and restores them from the image. A
  baseline is ``constant`` (a grey value, by default the mean of ImageNet's channel means,
  0.449, about 0 after normalisation) or ``blur`` (the image blurred by a Gaussian of σ
  ``blur_sigma`` px, reflecting edges). AUC: the trapezoid of P(target) over the fraction m_k/S².
- **ROAD.** At each percentage p the first (MoRF) or last (LeRF) round(p·S²/100) pixels of the
  order are removed and imputed by noisy linear imputation: each removed pixel is the weighted
  mean of its 8 neighbours (1/6 direct, 1/12 diagonal; outside the image they drop out), solved
  as one sparse system over the removed pixels, plus Gaussian noise. Summary: the mean of
  P(target) over the percentages (pytorch-grad-cam's ``ROAD*Average``).
- **Batched.** Perturbed inputs are built chunk by chunk (``batch_size`` inputs, across images),
  each through the model once; only the images a chunk needs are held, whatever n_steps.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse
import scipy.sparse.linalg
import torch
from scipy import ndimage
from scipy.integrate import trapezoid

from xiqa.data.cache import ImageCache
from xiqa.errors import InputError
from xiqa.evaluation import pointing
from xiqa.evaluation.shards import Shard, shard_indices
from xiqa.evaluation.stats import bootstrap_mean_ci, wilcoxon_signed_rank
from xiqa.io import numeric_columns, progress_bar, read_csv, staged_outputs, write_csv
from xiqa.model.network import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    classifier_head,
    resolve_device,
    to_model_input,
    use_full_fp32,
)
from xiqa.model.predict import load_model_and_cache

DEFAULT_N_STEPS = 100
DEFAULT_ROAD_PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
DEFAULT_ROAD_NOISE = 0.01  # pytorch-grad-cam's NoisyLinearImputer default, normalised units
DEFAULT_BLUR_SIGMA = 5.0  # px; RISE blurs with sigma 5 (kernel 11) at 224x224
BASELINES = ("constant", "blur")
# The grey that normalises to about 0 in every channel (-0.16, -0.03, +0.19).
DEFAULT_BASELINE_VALUE = float(np.mean(IMAGENET_MEAN))
# One grey step of noise is this many normalised units in every channel (within 2%).
GREY_STD = float(np.mean(IMAGENET_STD))
# ROAD's neighbour weights (Rong et al.; pytorch-grad-cam's road.py): (row, column) offsets.
NEIGHBOUR_WEIGHTS = (
    ((-1, -1), 1 / 12),
    ((-1, 0), 1 / 6),
    ((-1, 1), 1 / 12),
    ((0, -1), 1 / 6),
    ((0, 1), 1 / 6),
    ((1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((1, 1), 1 / 12),
)
CHANCE_MAPS = ("random", "uniform")
BASELINES_FOLDER = "_baselines"  # results/faithfulness/_baselines/{split}.csv
SUMMARY_COLUMNS = (
    "image_name",
    "label",
    "target",
    "prob",
    "deletion_auc",
    "insertion_auc",
    "road_morf_mean",
    "road_lerf_mean",
)
# Table metric -> (CSV column, True when higher is more faithful, label).
METRICS = {
    "deletion": ("deletion_auc", False, "Deletion AUC ↓"),
    "insertion": ("insertion_auc", True, "Insertion AUC ↑"),
    "road_morf": ("road_morf_mean", False, "ROAD MoRF ↓"),
    "road_lerf": ("road_lerf_mean", True, "ROAD LeRF ↑"),
}


# --- the ordering and the step counts --------------------------------------------------------


def saliency_order(saliency_map: np.ndarray) -> np.ndarray:
    """Flat (row-major) pixel indices, most salient first; equal values keep row-major order."""
    flat = np.asarray(saliency_map, dtype=np.float64).ravel()
    if not np.isfinite(flat).all():
        raise ValueError("saliency map has NaN or infinite values")
    return np.argsort(-flat, kind="stable")


def rank_map(saliency_map: np.ndarray) -> np.ndarray:
    """Each pixel's position in :func:`saliency_order` (0: removed first), shaped like the map."""
    order = saliency_order(saliency_map)
    ranks = np.empty(order.size, np.int64)
    ranks[order] = np.arange(order.size)
    return ranks.reshape(np.shape(saliency_map))


def _round_half_up(numerator: np.ndarray, denominator: int) -> np.ndarray:
    """round(numerator / denominator) for non-negative integers, halves up, exactly."""
    return (2 * np.asarray(numerator, np.int64) + denominator) // (2 * denominator)


def step_counts(n_pixels: int, n_steps: int) -> np.ndarray:
    """Pixels perturbed at steps k = 0 … n_steps: round(k · n_pixels / n_steps), halves up."""
    return _round_half_up(np.arange(n_steps + 1) * n_pixels, n_steps)


def percentage_counts(n_pixels: int, percentages: Sequence[float]) -> np.ndarray:
    """Pixels ROAD removes at each percentage: round(p · n_pixels / 100), halves up."""
    return np.floor(np.asarray(percentages, np.float64) * n_pixels / 100 + 0.5).astype(np.int64)


def curve_auc(fractions: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Trapezoid area under each curve (last axis) of P(target) over the perturbed fraction."""
    return trapezoid(np.asarray(probs, np.float64), np.asarray(fractions, np.float64), axis=-1)


# --- ROAD's noisy linear imputation ----------------------------------------------------------


def linear_imputation_system(
    image: np.ndarray, removed: np.ndarray
) -> tuple[scipy.sparse.csc_matrix, np.ndarray, np.ndarray]:
    """(A, b, flat indices of the removed pixels): A x = b puts each removed pixel at the
    weighted mean of its neighbours inside the image (known ones move to b).

    Built vectorised as COO triplets (pytorch-grad-cam fills a lil_matrix entry by entry, which
    dominates its cost at 600x600); A = diag(Σ w) − W is symmetric positive definite whenever a
    pixel is known.
    """
    height, width = removed.shape
    unknown = np.flatnonzero(removed.ravel())
    variable = np.full(height * width, -1, np.int64)
    variable[unknown] = np.arange(len(unknown))
    ys, xs = np.divmod(unknown, width)
    values = np.asarray(image, np.float64).ravel()
    diagonal = np.zeros(len(unknown))
    rhs = np.zeros(len(unknown))
    rows, cols, weights = [np.arange(len(unknown))], [np.arange(len(unknown))], []
    for (dy, dx), weight in NEIGHBOUR_WEIGHTS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        diagonal[inside] += weight
        neighbour = np.where(inside, ny * width + nx, 0)
        other = variable[neighbour]
        free = inside & (other >= 0)
        known = inside & (other < 0)
        rhs[known] += weight * values[neighbour[known]]
        rows.append(np.flatnonzero(free))
        cols.append(other[free])
        weights.append(np.full(np.count_nonzero(free), -weight))
    matrix = scipy.sparse.csc_matrix(
        (np.concatenate([diagonal, *weights]), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(unknown), len(unknown)),
    )
    return matrix, rhs, unknown


def noisy_linear_impute(
    image: np.ndarray,
    removed: np.ndarray,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The image (H, W) with its ``removed`` pixels linearly imputed, plus N(0, noise²) on
    them (float64). No pixel removed: the image; every pixel removed is an error."""
    result = np.array(image, dtype=np.float64)
    removed = np.asarray(removed, dtype=bool)
    if not removed.any():
        return result
    if removed.all():
        raise ValueError("linear imputation needs at least one known pixel")
    matrix, rhs, unknown = linear_imputation_system(result, removed)
    # SuperLU in symmetric mode (minimum degree on A^T + A, diagonal pivots): the system is SPD,
    # and this is about twice as fast as spsolve's default at 600x600.
    factor = scipy.sparse.linalg.splu(
        matrix,
        permc_spec="MMD_AT_PLUS_A",
        diag_pivot_thresh=0,
        options={"SymmetricMode": True},
    )
    solution = factor.solve(rhs)
    if noise > 0:
        solution = solution + noise * (rng or np.random.default_rng()).standard_normal(len(rhs))
    result.ravel()[unknown] = solution
    return result


# --- batched scoring -------------------------------------------------------------------------


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _probabilities(
    model: torch.nn.Module,
    n_inputs: int,
    build: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]],
    batch_size: int,
    desc: str,
) -> np.ndarray:
    """P(target) of ``n_inputs`` perturbed inputs, ``batch_size`` at a time: ``build(start,
    stop)`` makes inputs start … stop − 1 as grey images (b, S, S) in [0, 1] on the model's
    device and their targets (b,); each goes through the model exactly once."""
    probs = np.empty(n_inputs, np.float64)
    starts = range(0, n_inputs, batch_size)
    for start in progress_bar(iterable=starts, desc=desc, unit="batch"):
        stop = min(start + batch_size, n_inputs)
        grey, target = build(start, stop)
        with torch.inference_mode():
            logits = model(to_model_input(grey))
        chosen = torch.softmax(logits.float(), 1).gather(1, target.view(-1, 1))[:, 0]
        probs[start:stop] = chosen.double().cpu().numpy()
    return probs


class _ImageStates:
    """Per-image tensors a chunk needs, made on first use and dropped once a later image is
    asked for (inputs are built image after image), so memory stays bounded."""

    def __init__(self, make: Callable[[int], Any]):
        self.make, self.states = make, {}

    def __call__(self, index: int) -> Any:
        if index not in self.states:
            for old in [k for k in self.states if k < index - 1]:
                del self.states[old]
            self.states[index] = self.make(index)
        return self.states[index]


def _grey(image: np.ndarray) -> np.ndarray:
    return np.asarray(image, np.float64) / 255.0 if image.dtype == np.uint8 else image


def _baseline_image(grey: np.ndarray, kind: str, value: float, sigma: float) -> np.ndarray:
    if kind == "blur":
        return ndimage.gaussian_filter(grey, sigma, mode="reflect")
    return np.full_like(grey, value)


def _check_inputs(images: np.ndarray, maps: np.ndarray, targets: np.ndarray) -> None:
    if images.ndim != 3 or maps.shape != images.shape or len(targets) != len(images):
        raise ValueError(
            f"images {images.shape}, maps {maps.shape} and {len(targets)} targets disagree"
        )


def deletion_insertion(
    model: torch.nn.Module,
    images: np.ndarray,
    maps: np.ndarray,
    targets: np.ndarray,
    n_steps: int = DEFAULT_N_STEPS,
    deletion_baseline: str = "constant",
    insertion_baseline: str = "blur",
    baseline_value: float = DEFAULT_BASELINE_VALUE,
    blur_sigma: float = DEFAULT_BLUR_SIGMA,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves, each (N, n_steps + 1): P(target) after step k, for grey
    images (N, S, S) (uint8, or floats in [0, 1]) and maps (N, S, S). The masks are built on
    the model's device from rank maps (pixel perturbed at step k: rank < m_k)."""
    images, maps, targets = np.asarray(images), np.asarray(maps), np.asarray(targets)
    _check_inputs(images, maps, targets)
    device = _model_device(model)
    n, size = len(images), images.shape[1] * images.shape[2]
    counts = torch.from_numpy(step_counts(size, n_steps)).to(device)
    per_image = 2 * (n_steps + 1)  # deletion steps 0..n, then insertion steps 0..n

    def make(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        grey = _grey(images[i])
        stack = np.stack(
            [
                grey,
                _baseline_image(grey, deletion_baseline, baseline_value, blur_sigma),
                _baseline_image(grey, insertion_baseline, baseline_value, blur_sigma),
            ]
        ).astype(np.float32)  # the model's input precision
        ranks = torch.from_numpy(rank_map(maps[i])).to(device, torch.int32)
        return torch.from_numpy(stack).to(device), ranks

    states = _ImageStates(make)
    target_all = torch.as_tensor(targets, dtype=torch.long, device=device)

    def build(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        task = np.arange(start, stop)
        image, rest = np.divmod(task, per_image)
        curve, step = np.divmod(rest, n_steps + 1)
        first = int(image[0])
        chunk = [states(int(i)) for i in range(first, int(image[-1]) + 1)]
        local = torch.from_numpy(image - first).to(device)
        deletion = torch.from_numpy(curve == 0).to(device)
        # Per input: the image it starts from and what fills the perturbed pixels.
        pictures = torch.stack([c[0] for c in chunk])  # (images, 3, S, S)
        which_start = torch.where(deletion, 0, 2)  # deletion: the image; insertion: its baseline
        which_fill = torch.where(deletion, 1, 0)  # deletion: its baseline; insertion: the image
        begin = pictures[local, which_start]
        fill = pictures[local, which_fill]
        ranks = torch.stack([c[1] for c in chunk])[local]
        mask = ranks < counts[torch.from_numpy(step).to(device)].view(-1, 1, 1)
        return torch.where(mask, fill, begin), target_all[torch.from_numpy(image).to(device)]

    probs = _probabilities(model, n * per_image, build, batch_size, "deletion/insertion")
    probs = probs.reshape(n, 2, n_steps + 1)
    return probs[:, 0], probs[:, 1]


def road(
    model: torch.nn.Module,
    images: np.ndarray,
    maps: np.ndarray,
    targets: np.ndarray,
    percentages: Sequence[float] = DEFAULT_ROAD_PERCENTAGES,
    noise: float = DEFAULT_ROAD_NOISE,
    batch_size: int = 32,
    seed: int = 0,
    keys: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """ROAD's MoRF and LeRF curves, each (N, len(percentages)): P(target) with the first (MoRF)
    or last (LeRF) round(p·S²/100) pixels of the order imputed. ``noise`` is σ in normalised
    model-input units (as pytorch-grad-cam's), drawn once per pixel in grey units
    (σ · mean ImageNet std) so the three channels stay equal; the draws of image i, direction d
    and percentage j come from ``default_rng([seed, keys[i], d, j])`` (``keys`` default: 0 … N−1;
    run_faithfulness uses the cache rows), whatever the batching."""
    images, maps, targets = np.asarray(images), np.asarray(maps), np.asarray(targets)
    _check_inputs(images, maps, targets)
    device = _model_device(model)
    n, n_p = len(images), len(percentages)
    counts = percentage_counts(images.shape[1] * images.shape[2], percentages)
    keys = np.arange(n) if keys is None else np.asarray(keys, np.int64)
    per_image = 2 * n_p  # MoRF at each percentage, then LeRF
    states = _ImageStates(lambda i: (_grey(images[i]), rank_map(maps[i])))
    target_all = torch.as_tensor(targets, dtype=torch.long, device=device)

    def build(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        perturbed, image_of = [], []
        for task in range(start, stop):
            i, rest = divmod(task, per_image)
            direction, j = divmod(rest, n_p)
            grey, ranks = states(i)
            m = counts[j]
            removed = ranks < m if direction == 0 else ranks >= ranks.size - m
            rng = np.random.default_rng([seed, int(keys[i]), direction, j])
            perturbed.append(noisy_linear_impute(grey, removed, noise * GREY_STD, rng))
            image_of.append(i)
        grey = torch.from_numpy(np.stack(perturbed)).to(device, torch.float32)
        return grey, target_all[torch.tensor(image_of, device=device)]

    probs = _probabilities(model, n * per_image, build, batch_size, "ROAD").reshape(n, 2, n_p)
    return probs[:, 0], probs[:, 1]


def chance_map(kind: str, size: int, key: int, seed: int = 0) -> np.ndarray:
    """A chance baseline's map: ``random`` (uniform noise from default_rng([seed, key]), a
    random order) or ``uniform`` (zeros: row-major order by the tie rule)."""
    if kind == "random":
        return np.random.default_rng([seed, key]).random((size, size)).astype(np.float32)
    if kind == "uniform":
        return np.zeros((size, size), np.float32)
    raise InputError(f"unknown chance map {kind!r}; use {' or '.join(CHANCE_MAPS)}")


# --- parameters, scoring and the per-image CSV -----------------------------------------------


def check_parameters(
    n_steps: int,
    deletion_baseline: str,
    insertion_baseline: str,
    baseline_value: float,
    blur_sigma: float,
    road_percentages: Sequence[float],
    road_noise: float,
    batch_size: int,
) -> None:
    """InputError for parameters outside their range."""
    if n_steps < 1:
        raise InputError(f"--n-steps {n_steps} must be at least 1")
    for option, kind in (
        ("--deletion-baseline", deletion_baseline),
        ("--insertion-baseline", insertion_baseline),
    ):
        if kind not in BASELINES:
            raise InputError(f"{option} {kind!r}: use {' or '.join(BASELINES)}")
    if not 0 <= baseline_value <= 1:
        raise InputError(f"--baseline-value {baseline_value}: a grey value in [0, 1]")
    if "blur" in (deletion_baseline, insertion_baseline) and not blur_sigma > 0:
        raise InputError(f"--blur-sigma {blur_sigma} must be positive")
    if not road_percentages:
        raise InputError("--road-percentages: give at least one percentage")
    bad = [p for p in road_percentages if not (math.isfinite(p) and 0 < p < 100)]
    if bad:
        raise InputError(f"--road-percentages: {bad[0]:g} is not strictly between 0 and 100")
    if len(set(road_percentages)) != len(road_percentages):
        raise InputError("--road-percentages: a percentage is given twice")
    if not (math.isfinite(road_noise) and road_noise >= 0):
        raise InputError(f"--road-noise {road_noise} must be zero or positive")
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size} must be at least 1")


def curve_columns(n_steps: int, percentages: Sequence[float]) -> list[str]:
    """The curve columns after :data:`SUMMARY_COLUMNS`: deletion_0 … deletion_{n_steps},
    insertion_0 …, road_morf_{p} and road_lerf_{p} for each percentage p (``%g``)."""
    return (
        [f"deletion_{k}" for k in range(n_steps + 1)]
        + [f"insertion_{k}" for k in range(n_steps + 1)]
        + [f"road_morf_{p:g}" for p in percentages]
        + [f"road_lerf_{p:g}" for p in percentages]
    )


def score_maps(
    model: torch.nn.Module,
    images: np.ndarray,
    maps: np.ndarray,
    targets: np.ndarray,
    keys: Sequence[int],
    n_steps: int = DEFAULT_N_STEPS,
    deletion_baseline: str = "constant",
    insertion_baseline: str = "blur",
    baseline_value: float = DEFAULT_BASELINE_VALUE,
    blur_sigma: float = DEFAULT_BLUR_SIGMA,
    road_percentages: Sequence[float] = DEFAULT_ROAD_PERCENTAGES,
    road_noise: float = DEFAULT_ROAD_NOISE,
    batch_size: int = 32,
    seed: int = 0,
) -> pd.DataFrame:
    """Every faithfulness number of each map: the summary columns but image_name and label
    (target, prob = P(target) of the clean image, the AUCs, the ROAD means), then the curves."""
    deletion, insertion = deletion_insertion(
        model,
        images,
        maps,
        targets,
        n_steps,
        deletion_baseline,
        insertion_baseline,
        baseline_value,
        blur_sigma,
        batch_size,
    )
    morf, lerf = road(
        model, images, maps, targets, road_percentages, road_noise, batch_size, seed, keys
    )
    fractions = step_counts(images.shape[1] * images.shape[2], n_steps) / (
        images.shape[1] * images.shape[2]
    )
    summary = pd.DataFrame(
        {
            "target": np.asarray(targets, np.int64),
            "prob": deletion[:, 0],
            "deletion_auc": curve_auc(fractions, deletion),
            "insertion_auc": curve_auc(fractions, insertion),
            "road_morf_mean": morf.mean(1),
            "road_lerf_mean": lerf.mean(1),
        }
    )
    curves = pd.DataFrame(
        np.concatenate([deletion, insertion, morf, lerf], axis=1),
        columns=curve_columns(n_steps, road_percentages),
    )
    return pd.concat([summary, curves], axis=1)


def read_method_shards(
    cache: ImageCache,
    shard_paths: Sequence[str | os.PathLike],
    model_path: str | os.PathLike,
    n_classes: int,
) -> list[Shard]:
    """One method's shards of a split, in shard order, checked as ``xiqa pointing`` checks them
    (:func:`xiqa.evaluation.pointing.read_method_shards`, with the checkpoint ``model_path``),
    and every map finite, every target a class of the model."""
    shards = []
    for shard in pointing.read_method_shards(cache, shard_paths, model_path):
        for k in range(len(shard.index)):
            if not np.isfinite(shard.maps[k]).all():
                raise InputError(
                    f"{shard.path}: map of {shard.image_name[k]!r} has NaN or infinite values"
                )
            if not 0 <= shard.target[k] < n_classes:
                raise InputError(
                    f"{shard.path}: target {shard.target[k]} of {shard.image_name[k]!r} is not a "
                    f"class of the model (0 … {n_classes - 1})"
                )
        shards.append(shard)
    return sorted(shards, key=lambda s: s.attrs["shard"])


def _n_classes(model: torch.nn.Module) -> int:
    return int(classifier_head(model).out_features)


def _parameters(scoring: dict[str, Any]) -> dict[str, Any]:
    """:func:`score_maps`' parameters (n_steps, deletion_baseline, insertion_baseline,
    baseline_value, blur_sigma, road_percentages, road_noise, batch_size, seed): those given,
    checked, the rest at their defaults; an unknown one is an error."""
    defaults = {
        name: p.default
        for name, p in inspect.signature(score_maps).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    unknown = sorted(set(scoring) - set(defaults))
    if unknown:
        raise InputError(f"unknown faithfulness parameter {unknown[0]!r}")
    params = {**defaults, **{k: v for k, v in scoring.items() if v is not None}}
    params["road_percentages"] = tuple(float(p) for p in params["road_percentages"])
    check_parameters(**{k: v for k, v in params.items() if k != "seed"})
    return params


def _summary(frame: pd.DataFrame) -> dict[str, float]:
    return {"n": len(frame), **{c: float(frame[c].mean()) for c in SUMMARY_COLUMNS[4:]}}


def run_faithfulness(
    model_path: str | os.PathLike,
    images_path: str | os.PathLike,
    shard_paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    all_images: bool = False,
    max_images: int | None = None,
    device: str = "auto",
    **scoring: Any,
) -> dict[str, float]:
    """Score the maps of one method's shards of a split (each with its shard's target) whose
    images xiqa saliency would explain with ``all_images`` and ``max_images`` (the positives
    by default: a method whose shards hold every image, for the FROC, is scored on the same
    images as the others), and write the per-image CSV (docs/formats.md) atomically; returns
    n and the mean of each summary number. Every input is checked before anything is computed
    or written. ``scoring``: :func:`score_maps`' parameters (their defaults where left out)."""
    params = _parameters(scoring)
    dev = resolve_device(device)
    use_full_fp32(dev)
    model, cache = load_model_and_cache(model_path, images_path, dev)
    shards = read_method_shards(cache, shard_paths, model_path, _n_classes(model))
    chosen = shard_indices(cache, 0, 1, all_images, max_images)
    keep = [np.isin(s.index, chosen) for s in shards]
    index = np.concatenate([s.index[k] for s, k in zip(shards, keep, strict=True)])
    if not len(index):
        which = "image" if all_images else "positive image"
        raise InputError(
            f"{shard_paths[0]}: the shards hold no map of a {which} to score"
            + (f" among the {max_images} chosen by --max-images" if max_images else "")
        )
    scores = score_maps(
        model,
        cache.images[index],
        np.concatenate([s.maps[k] for s, k in zip(shards, keep, strict=True)]),
        np.concatenate([s.target[k] for s, k in zip(shards, keep, strict=True)]),
        keys=index,
        **params,
    )
    names = [cache.image_name[i] for i in index]
    frame = pd.concat(
        [pd.DataFrame({"image_name": names, "label": cache.label[index].astype(int)}), scores],
        axis=1,
    )
    write_csv(frame, out)
    return _summary(frame)


def run_faithfulness_baselines(
    model_path: str | os.PathLike,
    images_path: str | os.PathLike,
    out: str | os.PathLike,
    target_policy: str = "label",
    all_images: bool = False,
    max_images: int | None = None,
    device: str = "auto",
    **scoring: Any,
) -> dict[str, dict[str, float]]:
    """The chance rows of a split, once for all methods: a random and a uniform map for the
    images a method's shards hold (the same ``all_images``/``max_images`` choice as xiqa
    saliency, targets by ``target_policy``), scored like the methods' maps. Writes the
    per-image CSV with a first column ``baseline`` (random, uniform); returns each one's
    summary."""
    if target_policy not in ("label", "predicted"):
        raise InputError(f"unknown target policy {target_policy!r}; use label or predicted")
    params = _parameters(scoring)
    dev = resolve_device(device)
    use_full_fp32(dev)
    model, cache = load_model_and_cache(model_path, images_path, dev)
    rows = shard_indices(cache, 0, 1, all_images, max_images)
    targets = cache.label[rows].astype(np.int64)
    if target_policy == "predicted":  # the class xiqa saliency --targets predicted explains
        predicted = []
        with torch.inference_mode():
            step = params["batch_size"]
            for start in range(0, len(rows), step):
                batch = torch.from_numpy(cache.images[rows[start : start + step]]).to(dev)
                predicted.append(model(to_model_input(batch)).argmax(1).cpu().numpy())
        targets = np.concatenate(predicted).astype(np.int64) if predicted else targets
    frames, summaries = [], {}
    for kind in CHANCE_MAPS:
        maps = np.stack(
            [chance_map(kind, cache.size, int(r), params["seed"]) for r in rows]
        ).reshape(len(rows), cache.size, cache.size)
        scores = score_maps(model, cache.images[rows], maps, targets, keys=rows, **params)
        first = pd.DataFrame(
            {
                "baseline": kind,
                "image_name": [cache.image_name[r] for r in rows],
                "label": cache.label[rows].astype(int),
            }
        )
        frames.append(pd.concat([first, scores], axis=1))
        summaries[kind] = _summary(frames[-1])
    write_csv(pd.concat(frames, ignore_index=True), out)
    return summaries


# --- reading back, the tables and the figure -------------------------------------------------


def read_faithfulness(path: str | os.PathLike, baselines: bool = False) -> pd.DataFrame:
    """A per-image faithfulness CSV with its numbers as numbers (``baselines``: the chance CSV,
    with its ``baseline`` column); InputError naming the file and line otherwise."""
    frame = read_csv(path, "faithfulness results")
    needed = (("baseline",) if baselines else ()) + SUMMARY_COLUMNS
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: not a faithfulness CSV of this xiqa version (no column "
            f"{', '.join(missing)}); rerun xiqa faithfulness"
        )
    numbers = [c for c in frame.columns if c not in ("image_name", "baseline")]
    values = numeric_columns(frame, numbers, path, "not an xiqa faithfulness row")
    text = frame[[c for c in ("baseline", "image_name") if c in frame.columns]]
    return pd.concat([text, values], axis=1)


def curves_of(frame: pd.DataFrame, curve: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, curves (N, K)) of one curve type of a :func:`read_faithfulness` frame: deletion or
    insertion over the fraction k/n_steps, road_morf or road_lerf over the percentage."""
    columns = [c for c in frame.columns if c.startswith(f"{curve}_") and c[len(curve) + 1 :]]
    columns = [c for c in columns if c[len(curve) + 1 :].replace(".", "", 1).isdigit()]
    x = np.array([float(c[len(curve) + 1 :]) for c in columns])
    if curve in ("deletion", "insertion") and len(x):
        x = x / x.max()
    return x, frame[columns].to_numpy(np.float64)


def read_faithfulness_results(
    results: str | os.PathLike, methods: Sequence[str], splits: Sequence[str]
) -> tuple[dict[tuple[str, str], pd.DataFrame], dict[tuple[str, str], pd.DataFrame]]:
    """Per (method, split) ``results/faithfulness/{method}/{split}.csv`` and per (chance map,
    split) the rows of ``results/faithfulness/_baselines/{split}.csv``."""
    folder = Path(results) / "faithfulness"
    scores = {(m, s): read_faithfulness(folder / m / f"{s}.csv") for m in methods for s in splits}
    chance = {}
    for split in splits:
        frame = read_faithfulness(folder / BASELINES_FOLDER / f"{split}.csv", baselines=True)
        for kind in CHANCE_MAPS:
            chance[f"{kind}-map", split] = frame[frame["baseline"] == kind].reset_index(drop=True)
    return scores, chance


def faithfulness_table(
    scores: dict[tuple[str, str], pd.DataFrame],
    chance: dict[tuple[str, str], pd.DataFrame],
    methods: Sequence[str],
    splits: Sequence[str],
) -> list[dict[str, Any]]:
    """One row per method (then the chance maps) and split: per metric the mean, its 95%
    percentile-bootstrap interval, the method that is best on the split (lowest deletion and
    MoRF, highest insertion and LeRF, among the methods) and the Wilcoxon signed-rank p of this
    row against it, paired on the images both scored (blank for the best itself)."""
    rows = []
    everything = {**scores, **chance}
    names = list(methods) + [f"{kind}-map" for kind in CHANCE_MAPS]
    for split in splits:
        best = {}
        for metric, (column, higher, _) in METRICS.items():
            means = {m: scores[m, split][column].mean() for m in methods}
            ranked = [m for m in methods if np.isfinite(means[m])]
            pick = max if higher else min
            best[metric] = pick(ranked, key=lambda m: means[m]) if ranked else ""
        for name in names:
            if (name, split) not in everything:
                continue
            frame = everything[name, split]
            row: dict[str, Any] = {"name": name, "split": split, "n": len(frame)}
            for metric, (column, _, _) in METRICS.items():
                values = frame[column].to_numpy(np.float64)
                low, high = bootstrap_mean_ci(values)
                p: Any = ""
                if best[metric] and best[metric] != name:
                    other = scores[best[metric], split].set_index("image_name")[column]
                    mine = frame.set_index("image_name")[column]
                    shared = mine.index.intersection(other.index)
                    p = wilcoxon_signed_rank(mine[shared].to_numpy(), other[shared].to_numpy())
                row.update(
                    {
                        metric: float(values.mean()) if len(values) else math.nan,
                        f"{metric}_ci_low": low,
                        f"{metric}_ci_high": high,
                        f"{metric}_best": best[metric],
                        f"{metric}_p_vs_best": p,
                    }
                )
            rows.append(row)
    return rows


def _cell(row: dict[str, Any], metric: str, dash: str = ", ") -> str:
    from xiqa.evaluation.tables import _fmt

    return (
        f"{_fmt(row[metric])} [{_fmt(row[f'{metric}_ci_low'])}{dash}"
        f"{_fmt(row[f'{metric}_ci_high'])}]"
    )


def faithfulness_markdown(rows: list[dict[str, Any]], splits: Sequence[str]) -> str:
    """One table per split: a row per method and chance map, per metric mean [CI] and p."""
    from xiqa.evaluation.tables import _p

    parts = []
    for split in splits:
        split_rows = [r for r in rows if r["split"] == split]
        header = ["Method", "n"]
        for _, _, label in METRICS.values():
            header += [f"{label} [95% CI]", "p vs best"]
        lines = [
            f"**{split}**",
            "",
            "| " + " | ".join(header) + " |",
            "|---|" + "---:|" * (len(header) - 1),
        ]
        for row in split_rows:
            cells = [row["name"], str(row["n"])]
            for metric in METRICS:
                cells += [_cell(row, metric), _p(row[f"{metric}_p_vs_best"])]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines) + "\n")
    notes = (
        "\nFaithfulness (docs/protocol.md, Faithfulness): deletion and insertion AUC of "
        "P(target) over the fraction of pixels removed or restored, most salient first (RISE); "
        "ROAD: mean P(target) over the removal percentages with noisy linear imputation, most "
        "(MoRF) or least (LeRF) relevant first. ↓: lower is more faithful. 95% percentile-"
        "bootstrap intervals (2000 resamples); p: Wilcoxon signed-rank test against the best "
        "method of the split for that metric, on the same images. random-map and uniform-map "
        "(row-major order) show what chance gives.\n"
    )
    return "\n".join(parts) + notes


def faithfulness_latex(rows: list[dict[str, Any]], splits: Sequence[str]) -> str:
    from xiqa.evaluation.tables import _latex_escape, _p, latex_table

    labels = ["Deletion $\\downarrow$", "Insertion $\\uparrow$", "MoRF $\\downarrow$"]
    labels.append("LeRF $\\uparrow$")
    body = []
    for split in splits:
        body.append(rf"\multicolumn{{{2 + 2 * len(METRICS)}}}{{l}}{{{_latex_escape(split)}}} \\")
        for row in (r for r in rows if r["split"] == split):
            cells = [_latex_escape(row["name"]), str(row["n"])]
            for metric in METRICS:
                p = _latex_escape(_p(row[f"{metric}_p_vs_best"])).replace("<", "$<$")
                cells += [_cell(row, metric, "--"), p]
            body.append(" & ".join(cells) + r" \\")
    head = " & ".join(["Method", "n"] + [f"{label} (95\\% CI) & p" for label in labels])
    caption = (
        r"Faithfulness: deletion and insertion AUC, ROAD MoRF and LeRF means; "
        r"p: Wilcoxon signed-rank test against the best method of the split."
    )
    return latex_table(caption, f"ll{'rr' * len(METRICS)}", head, body)


def faithfulness_figure(
    folder: Path,
    scores: dict[tuple[str, str], pd.DataFrame],
    chance: dict[tuple[str, str], pd.DataFrame],
    methods: Sequence[str],
    splits: Sequence[str],
) -> None:
    """faithfulness.{png,pdf}: a row per split, a panel per curve type (deletion, insertion,
    ROAD MoRF, ROAD LeRF), the mean curve of each method; chance maps dashed."""
    from xiqa.evaluation.figures import _method_colours, _method_line_styles, _save, plt

    curves = ("deletion", "insertion", "road_morf", "road_lerf")
    titles = ("deletion", "insertion", "ROAD MoRF", "ROAD LeRF")
    colours, styles = _method_colours(list(methods)), _method_line_styles(list(methods))
    chance_names = [f"{kind}-map" for kind in CHANCE_MAPS]
    colours.update(dict.fromkeys(chance_names, "black"))
    styles.update(zip(chance_names, ("--", ":"), strict=True))
    figure, axes = plt.subplots(
        len(splits), len(curves), squeeze=False, figsize=(14, 3.2 * len(splits) + 0.6)
    )
    for row_axes, split in zip(axes, splits, strict=True):
        for ax, curve, title in zip(row_axes, curves, titles, strict=True):
            lines = [(m, scores[m, split]) for m in methods]
            lines += [(m, chance[m, split]) for m in chance_names if (m, split) in chance]
            for name, frame in lines:
                x, values = curves_of(frame, curve)
                if len(values):
                    ax.plot(
                        x,
                        values.mean(0),
                        color=colours[name],
                        linestyle=styles[name],
                        label=name,
                        lw=1.6 if name in chance_names else 1.1,
                    )
            ax.set_title(f"{split}: {title}", fontsize=9)
            ax.set_ylim(0, 1.02)
        row_axes[0].set_ylabel("mean P(target)")
    for ax, curve in zip(axes[-1], curves, strict=True):
        ax.set_xlabel("fraction of pixels" if curve in curves[:2] else "% removed")
    axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.tight_layout()
    _save(figure, folder, "faithfulness")


def write_faithfulness_tables(
    results: str | os.PathLike, methods: Sequence[str], splits: Sequence[str]
) -> list[dict[str, Any]]:
    """Read ``results/faithfulness/{method}/{split}.csv`` and ``_baselines/{split}.csv``; write
    results/tables/faithfulness.{csv,md,tex} and results/figures/faithfulness.{png,pdf}, all or
    none. Returns the table's rows."""
    if not methods:
        raise InputError("no methods for the faithfulness table")
    if not splits:
        raise InputError("no splits for the faithfulness table")
    results = Path(results)
    scores, chance = read_faithfulness_results(results, methods, splits)
    rows = faithfulness_table(scores, chance, methods, splits)
    from xiqa.evaluation.tables import _write_csv, _write_text

    with staged_outputs(results) as stage:
        _write_csv(stage / "tables" / "faithfulness.csv", rows)
        _write_text(stage / "tables" / "faithfulness.md", faithfulness_markdown(rows, splits))
        _write_text(stage / "tables" / "faithfulness.tex", faithfulness_latex(rows, splits))
        faithfulness_figure(stage / "figures", scores, chance, methods, splits)
    return rows


def parse_percentages(value: str) -> tuple[float, ...]:
    """'10,20,30' → (10.0, 20.0, 30.0); InputError for what is no number."""
    try:
        return tuple(float(p) for p in value.split(",") if p.strip())
    except ValueError:
        raise InputError(f"--road-percentages {value!r}: not numbers") from None


def methods_list(value: str) -> list[str]:
    """A --methods value: a JSON object (the config's mapping; its keys, in order) or a
    comma-separated list of names."""
    text = value.strip()
    if text.startswith("{"):
        try:
            return list(json.loads(text))
        except json.JSONDecodeError as exc:
            raise InputError(f"--methods is not valid JSON ({exc})") from None
    return [m for m in text.split(",") if m]
