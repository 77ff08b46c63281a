"""Training: the paper's recipe, resumable epoch by epoch, deterministic on the CPU.

Every epoch ends with ``checkpoint.pt`` (weights, optimiser, progress) written atomically, so a
killed job re-run with the same ``--out`` resumes after its last completed epoch. All randomness
of epoch e (the sampler's permutation, the augmentation parameters, the global torch RNG) is
drawn from generators seeded with (seed, e); the state to restore is therefore the weights, the
optimiser's momentum and the epoch counter, and an interrupted run ends with the same weights as
an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from xiqa.data.cache import ImageCache, load_cache
from xiqa.errors import InputError
from xiqa.evaluation.stats import bootstrap_auc_ci, roc_auc
from xiqa.io import atomic_output, progress_bar
from xiqa.model.augment import augment_batch
from xiqa.model.network import build_model, load_model, resolve_device, save_model, to_model_input
from xiqa.model.predict import predict_probs
from xiqa.model.recipe import TrainConfig

HISTORY_COLUMNS = ("epoch", "train_loss", "val_auc", "lr", "seconds")


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled epoch in batches; the last partial batch is dropped (a batch of one would break
    batch norm) unless the whole set is smaller than a batch."""
    order = torch.randperm(n, generator=generator)
    if n <= batch_size:
        return [order]
    return list(order[: n - n % batch_size].split(batch_size))


def load_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    index: torch.Tensor,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The input pipeline: gather a batch of cached uint8 images, move it to the device, augment
    it there (when a generator is given) and normalise it for the model."""
    x = images[index].to(device, non_blocking=True).float() / 255.0
    y = labels[index].to(device, non_blocking=True)
    if generator is not None:
        x = augment_batch(x, generator)
    x = to_model_input(x)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def _fingerprint(config: TrainConfig, train: ImageCache, val: ImageCache) -> dict[str, Any]:
    """What a resumed run must share with its checkpoint: the recipe (the epoch count may grow)
    and the content of both caches."""
    recipe = {k: v for k, v in dataclasses.asdict(config).items() if k != "epochs"}
    return {
        **recipe,
        "image_size": train.size,
        "train_cache": _digest(train),
        "val_cache": _digest(val),
    }


def _digest(cache: ImageCache) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.ascontiguousarray(cache.images).data)
    digest.update(np.ascontiguousarray(cache.label).data)
    digest.update("\n".join(cache.image_name).encode())
    return digest.hexdigest()


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    with atomic_output(path) as tmp:
        frame = pd.DataFrame(history, columns=list(HISTORY_COLUMNS))
        frame.to_csv(tmp, index=False, lineterminator="\n")


def _resume_state(out: Path, fingerprint: dict[str, Any], restart: bool) -> dict[str, Any] | None:
    """The state of an interrupted run in ``out`` to continue, or None to start afresh.

    A checkpoint of another recipe or other data is an error, or with ``restart`` is discarded.
    """
    path = out / "checkpoint.pt"
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = state["fingerprint"]
    except Exception as exc:
        if not restart:
            raise InputError(
                f"{path}: unreadable training checkpoint ({exc}); remove it to start over"
            ) from None
        saved = {}
    changed = sorted(
        k for k in fingerprint.keys() | saved.keys() if fingerprint.get(k) != saved.get(k)
    )
    if not changed:
        return state
    if not restart:
        raise InputError(
            f"{path}: this run was started with a different {', '.join(changed)}; "
            "use another --out, remove the checkpoint, or pass --restart-if-changed"
        )
    for name in ("checkpoint.pt", "best.pt"):
        (out / name).unlink(missing_ok=True)
    return None


def train(
    train_cache: str | os.PathLike,
    val_cache: str | os.PathLike,
    out: str | os.PathLike,
    config: TrainConfig,
    device: str = "auto",
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    restart_if_changed: bool = False,
) -> dict[str, Any]:
    """Train (or resume training) and write ``out``/model.pt, history.csv, metrics.json.

    A checkpoint in ``out`` from another recipe or other data is refused, or discarded when
    ``restart_if_changed`` (the workflow's choice: it reruns training only when inputs changed).

    ``on_epoch_end(epoch, row)`` is called after each epoch's checkpoint is safely written.
    Returns the metrics written to metrics.json.
    """
    config.check()
    train_set, val_set = load_cache(train_cache), load_cache(val_cache)
    if train_set.size != val_set.size:
        raise InputError(
            f"{val_cache}: images are {val_set.size}x{val_set.size}, the training "
            f"cache's are {train_set.size}x{train_set.size}"
        )
    if len(set(val_set.label.tolist())) < 2:
        raise InputError(f"{val_cache}: validation needs positive and negative images for AUC")
    dev = resolve_device(device)
    out = Path(out)
    fingerprint = _fingerprint(config, train_set, val_set)
    state = _resume_state(out, fingerprint, restart_if_changed)

    torch.manual_seed(config.seed)
    model = build_model(config.arch, config.pretrained).to(dev)
    out.mkdir(parents=True, exist_ok=True)  # only once the inputs proved good
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    history: list[dict[str, Any]] = []
    start_epoch, best_auc, best_epoch = 0, -1.0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = state["epoch"]
        history, best_auc, best_epoch = state["history"], state["best_auc"], state["best_epoch"]

    images = torch.from_numpy(train_set.images)
    labels = torch.from_numpy(train_set.label).long()
    if dev.type == "cuda":
        images, labels = images.pin_memory(), labels.pin_memory()
    meta = {
        "arch": config.arch,
        "image_size": train_set.size,
        "classes": ["clean", "object"],
        "config": dataclasses.asdict(config),
    }
    started = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        epoch_start = time.perf_counter()
        torch.manual_seed(_epoch_seed(config.seed, epoch))
        generator = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch))
        batches = _batches(len(images), config.batch_size, generator)
        model.train()
        losses = []
        for step, index in enumerate(
            progress_bar(iterable=batches, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch")
        ):
            lr = config.lr_at(step, epoch, len(batches))
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = load_batch(images, labels, index, dev, generator if config.augment else None)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        probs = predict_probs(model, val_set.images, config.batch_size * 2, dev)
        val_auc = roc_auc(val_set.label, probs)
        row = {
            "epoch": epoch + 1,
            "train_loss": round(float(torch.stack(losses).mean()), 6),
            "val_auc": round(val_auc, 6),
            "lr": lr,
            "seconds": round(time.perf_counter() - epoch_start, 3),
        }
        history.append(row)
        if val_auc > best_auc:
            best_auc, best_epoch = val_auc, epoch + 1
            save_model(out / "best.pt", model, {**meta, "epoch": epoch + 1, "val_auc": val_auc})
        with atomic_output(out / "checkpoint.pt") as tmp:
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch + 1,
                    "history": history,
                    "best_auc": best_auc,
                    "best_epoch": best_epoch,
                    "fingerprint": fingerprint,
                },
                tmp,
            )
        _write_history(out / "history.csv", history)
        print(
            f"epoch {epoch + 1}/{config.epochs}: loss {row['train_loss']:.4f}, "
            f"val AUC {val_auc:.4f}, {row['seconds']:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)

    _write_history(out / "history.csv", history)
    with atomic_output(out / "model.pt") as tmp:
        shutil.copyfile(out / "best.pt", tmp)
    best_model, _ = load_model(out / "model.pt", dev)
    best_probs = predict_probs(best_model, val_set.images, config.batch_size * 2, dev)
    low, high = bootstrap_auc_ci(val_set.label, best_probs, seed=config.seed)
    seconds = sum(row["seconds"] for row in history)
    metrics = {
        "best_epoch": best_epoch,
        "val_auc": best_auc,
        "val_auc_ci95": [low, high],
        "epochs": len(history),
        "train_seconds": round(seconds, 1),
        "train_images_per_second": round(len(history) * len(images) / max(seconds, 1e-9), 2),
        "device": str(dev),
        "arch": config.arch,
        "image_size": train_set.size,
        "seconds_this_run": round(time.perf_counter() - started, 1),
    }
    with atomic_output(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
