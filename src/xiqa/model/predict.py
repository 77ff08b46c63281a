"""Inference: P(foreign object) per cached image, written as a predictions CSV."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from xiqa.data.cache import ImageCache, load_cache
from xiqa.errors import InputError
from xiqa.evaluation.stats import bootstrap_auc_ci, roc_auc, roc_curve
from xiqa.io import atomic_output, numeric_columns, progress_bar, read_csv, write_csv
from xiqa.model.network import load_model, resolve_device, to_model_input


def load_model_and_cache(
    model_path: str | os.PathLike, images_path: str | os.PathLike, device: torch.device
) -> tuple[torch.nn.Module, ImageCache]:
    """A checkpoint's model on ``device`` and an image cache of the size it was trained at."""
    model, meta = load_model(model_path, device)
    cache = load_cache(images_path)
    if cache.size != meta["image_size"]:
        raise InputError(
            f"{images_path}: images are {cache.size}x{cache.size} but the model "
            f"{model_path} was trained at {meta['image_size']}x{meta['image_size']}"
        )
    return model, cache


def predict_probs(
    model: torch.nn.Module, images: np.ndarray, batch_size: int, device: torch.device
) -> np.ndarray:
    """Softmax probability of class 1 for grey uint8 images (N, S, S), clean (no augmentation).

    The model is switched to eval mode and back to the mode it had.
    """
    was_training = model.training
    model.eval()
    probs = []
    with torch.inference_mode():
        starts = range(0, len(images), batch_size)
        for start in progress_bar(iterable=starts, desc="predicting", unit="batch"):
            x = torch.from_numpy(images[start : start + batch_size]).to(device, non_blocking=True)
            x = to_model_input(x)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(x)
            probs.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu())
    model.train(was_training)
    return torch.cat(probs).numpy() if probs else np.zeros(0, np.float32)


def classification_metrics(labels: np.ndarray, probs: np.ndarray, seed: int = 0) -> dict:
    """AUC with a bootstrap 95% interval and the ROC curve, for tables and figures."""
    if len(set(np.asarray(labels).tolist())) < 2:
        return {"n": len(labels), "positives": int(np.sum(labels)), "auc": None}
    auc = roc_auc(labels, probs)
    low, high = bootstrap_auc_ci(labels, probs, seed=seed)
    fpr, tpr, _ = roc_curve(labels, probs)
    return {
        "n": len(labels),
        "positives": int(np.sum(labels)),
        "auc": auc,
        "auc_ci95": [low, high],
        "roc_fpr": fpr.tolist(),
        "roc_tpr": tpr.tolist(),
    }


def read_predictions(path: str | os.PathLike) -> pd.DataFrame:
    """``image_name``, ``label`` (int) and ``prob`` (float) per image, from xiqa predict's CSV."""
    frame = read_csv(path, "predictions")
    if not {"image_name", "label", "prob"} <= set(frame.columns):
        raise InputError(f"{path}: not an xiqa predictions CSV")
    numbers = numeric_columns(frame, ("label", "prob"), path, "not an xiqa predictions row")
    return frame[["image_name"]].assign(label=numbers["label"].astype(int), prob=numbers["prob"])


def read_classification_metrics(path: str | os.PathLike) -> dict:
    """What :func:`run_predict` wrote with ``metrics_out``: n, positives, AUC (None with one
    class) and, with an AUC, its interval and the ROC curve."""
    try:
        metrics = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            f"{path}: predictions metrics not found (xiqa predict --metrics)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path}: not JSON; rerun xiqa predict --metrics") from None
    if not isinstance(metrics, dict):
        metrics = {}
    keys = ["n", "positives", "auc"]
    if metrics.get("auc") is not None:
        keys += ["auc_ci95", "roc_fpr", "roc_tpr"]
    missing = [key for key in keys if key not in metrics]
    if missing:
        raise InputError(
            f"{path}: not the metrics of xiqa predict (no key {', '.join(missing)}); "
            "rerun xiqa predict --metrics"
        )
    return metrics


def run_predict(
    model_path: str | os.PathLike,
    images_path: str | os.PathLike,
    out: str | os.PathLike,
    metrics_out: str | os.PathLike | None = None,
    batch_size: int = 64,
    device: str = "auto",
) -> dict:
    """Write ``image_name, label, prob`` for every image of a cache; optionally the metrics."""
    dev = resolve_device(device)
    model, cache = load_model_and_cache(model_path, images_path, dev)
    probs = predict_probs(model, cache.images, batch_size, dev)
    predictions = {
        "image_name": cache.image_name,
        "label": cache.label.astype(int),
        "prob": [f"{prob:.6f}" for prob in probs],  # 6 decimals, zeros kept
    }
    write_csv(pd.DataFrame(predictions), out)
    metrics = classification_metrics(cache.label, probs)
    if metrics_out is not None:
        with atomic_output(metrics_out) as tmp:
            tmp.write_text(json.dumps(metrics) + "\n")
    return metrics
