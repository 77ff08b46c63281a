"""Sanity check: the model-parameter randomisation test (Adebayo et al., NeurIPS 2018).

A saliency method that explains the model must change when the model's learned weights are
destroyed. Cascading randomisation re-initialises the trained model's stages one after another
from the output down (``fc``, the last block, ..., the stem ``conv1``), each with its modules' own
initialisers (``reset_parameters``: PyTorch's default initialisation; batch norm back to weight 1,
bias 0 and fresh running statistics), drawn on the CPU from one generator seeded with ``seed``,
so the randomised weights are the same on every device. After each stage the method's maps of a
fixed, seeded subset of the positive images are compared with the trained model's maps by
Spearman's rank correlation of their absolute values, per image. Stage ``none`` recomputes the
maps with an untouched copy of the model: its correlation is 1. A map that does not react stays
near 1 all the way down.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from xiqa.errors import InputError
from xiqa.evaluation.stats import spearman
from xiqa.io import numeric_columns, progress_bar, read_csv, write_csv
from xiqa.model.network import resolve_device, to_model_input
from xiqa.model.predict import load_model_and_cache
from xiqa.saliency import explain, resolve_method
from xiqa.saliency.probe import named_module

SANITY_COLUMNS = ("method", "stage_index", "stage", "image_name", "spearman")
NO_RANDOMISATION = "none"


def randomisation_stages(model: nn.Module) -> list[str]:
    """The model's stages from the output down: its top-level modules with parameters, with a
    top-level ``nn.Sequential`` taken apart into its children (ResNet's blocks ``layer4.1``,
    ``layer4.0``, ...; DenseNet's dense blocks and transitions)."""
    stages = []
    for name, child in model.named_children():
        parts = child.named_children() if isinstance(child, nn.Sequential) else [("", child)]
        for part, module in parts:
            if any(True for _ in module.parameters()):
                stages.append(f"{name}.{part}" if part else name)
    return stages[::-1]


def reinitialise(module: nn.Module) -> None:
    """Re-draw every parameter and buffer of ``module`` with its submodules' own initialisers,
    from the global torch generator."""
    for sub in module.modules():
        own = list(sub.parameters(recurse=False))
        if hasattr(sub, "reset_parameters"):
            sub.reset_parameters()
        elif own:
            raise InputError(f"cannot re-initialise {type(sub).__name__}: no reset_parameters")


def checked_stages(model: nn.Module, stages: Sequence[str] | None) -> list[str]:
    """The stages to measure, in cascade order: all of the model's, or the named subset (each
    named stage is measured after every stage above it has been randomised as well)."""
    cascade = randomisation_stages(model)
    if stages is None:
        return cascade
    if not stages:
        raise InputError("no randomisation stages given")
    unknown = [s for s in stages if s not in cascade]
    if unknown:
        raise InputError(
            f"unknown randomisation stage(s) {', '.join(map(repr, unknown))}; "
            f"the model's stages from the output down: {', '.join(cascade)}"
        )
    return [s for s in cascade if s in set(stages)]


def _maps(model, images, targets, family, params, batch_size) -> np.ndarray:
    """|maps| (N, H, W) of one method, in batches, as float64 on the CPU."""
    out = []
    for start in range(0, len(images), batch_size):
        x, t = images[start : start + batch_size], targets[start : start + batch_size]
        out.append(explain(model, x, t, family, **params).abs().double().cpu().numpy())
    return np.concatenate(out)


def randomised_models(
    model: nn.Module, stages: Sequence[str] | None = None, seed: int = 0
) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``("none", copy)`` and then, for each measured stage in cascade order, ``(stage,
    copy)`` with every stage from the output down to that one re-initialised. One copy is
    updated in place between yields; ``model`` itself is never changed."""
    measured = set(checked_stages(model, stages))
    cascade = randomisation_stages(model)
    last = max(cascade.index(s) for s in measured)
    randomised = copy.deepcopy(model)
    yield NO_RANDOMISATION, randomised
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for stage in progress_bar(iterable=cascade[: last + 1], desc="randomising", unit="stage"):
            target = named_module(randomised, stage)
            fresh = copy.deepcopy(target).cpu()  # drawn on the CPU: the same on every device
            reinitialise(fresh)
            target.load_state_dict(fresh.state_dict())
            if stage in measured:
                yield stage, randomised


def randomisation_correlations(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    method: str,
    params: dict[str, Any] | None = None,
    stages: Sequence[str] | None = None,
    seed: int = 0,
    batch_size: int = 16,
) -> list[tuple[str, np.ndarray]]:
    """[(stage, Spearman correlation per image)] for stage ``none`` and then each measured stage
    of the cascade: the maps of ``model`` against those of its progressively randomised copy.
    ``images``: normalised model input (N, 3, H, W); ``targets``: the class explained."""
    family, params = resolve_method(method, params)
    checked_stages(model, stages)  # bad stage names fail before any map is computed
    trained = _maps(model, images, targets, family, params, batch_size)
    results = []
    for stage, randomised in randomised_models(model, stages, seed):
        maps = _maps(randomised, images, targets, family, params, batch_size)
        correlations = [spearman(a, b) for a, b in zip(trained, maps, strict=True)]
        results.append((stage, np.array(correlations)))
    return results


def sanity_images(labels: np.ndarray, n_images: int, seed: int) -> np.ndarray:
    """Cache rows of ``n_images`` positive images drawn with ``seed``, in cache order."""
    positives = np.flatnonzero(np.asarray(labels) == 1)
    if n_images < 1:
        raise InputError(f"--n-images {n_images}: must be at least 1")
    if n_images > len(positives):
        raise InputError(
            f"--n-images {n_images}: the cache has only {len(positives)} positive images"
        )
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(positives, n_images, replace=False))


def run_sanity(
    model_path: str | os.PathLike,
    images_path: str | os.PathLike,
    method: str,
    out: str | os.PathLike,
    n_images: int,
    params: dict[str, Any] | None = None,
    stages: Sequence[str] | None = None,
    seed: int = 0,
    batch_size: int = 16,
    device: str = "auto",
) -> list[tuple[str, np.ndarray]]:
    """The randomisation test of one method on ``n_images`` positive images of a cache; writes
    one row per stage and image: ``method, stage_index, stage, image_name, spearman``."""
    family, resolved = resolve_method(method, params)
    dev = resolve_device(device)
    if dev.type == "cuda":  # full fp32, as for the saliency maps themselves
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    model, cache = load_model_and_cache(model_path, images_path, dev)
    rows = sanity_images(cache.label, n_images, seed)
    images = to_model_input(torch.from_numpy(cache.images[rows]).to(dev))
    targets = torch.from_numpy(cache.label[rows]).to(dev)
    results = randomisation_correlations(
        model, images, targets, family, resolved, stages, seed, batch_size
    )
    names = [cache.image_name[i] for i in rows]
    frame = pd.DataFrame(
        [
            (method, index, stage, name, value)  # NaN, an empty cell: a constant map
            for index, (stage, correlations) in enumerate(results)
            for name, value in zip(names, correlations.tolist(), strict=True)
        ],
        columns=SANITY_COLUMNS,
    )
    write_csv(frame, out)
    return results


def summarise(correlations) -> dict[str, Any]:
    """Mean, standard deviation (n - 1) and count of the defined correlations (NaN: a constant
    map); the mean and SD are NaN when none, the SD when one, is defined."""
    values = np.asarray(correlations, dtype=np.float64)
    values = values[np.isfinite(values)]
    n = len(values)
    return {
        "mean": float(values.mean()) if n else math.nan,
        "sd": float(values.std(ddof=1)) if n > 1 else math.nan,
        "n": n,
    }


def read_sanity(path: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    """[(stage, correlation per image)] in cascade order, from ``xiqa sanity``'s CSV."""
    frame = read_csv(path, "sanity results")
    if list(frame.columns) != list(SANITY_COLUMNS):
        raise InputError(f"{path}: not an xiqa sanity CSV (columns {list(frame.columns)})")
    numbers = numeric_columns(
        frame, ("stage_index", "spearman"), path, "not a number", optional=("spearman",)
    )
    frame = frame.assign(stage_index=numbers["stage_index"], spearman=numbers["spearman"])
    return [
        (stage, group["spearman"].to_numpy())
        for (_, stage), group in frame.groupby(["stage_index", "stage"], sort=True)
    ]
