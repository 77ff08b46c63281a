"""Saliency shards: one method's maps for one shard of a split, as HDF5 (docs/formats.md).

Datasets: ``maps`` (N, S, S) float16 or float32, one chunk per map, compressed; ``image_name``
(N,) utf-8; ``index`` (N,) the rows of the image cache; ``target`` (N,) int; ``prob`` (N,)
float32, the model's P(foreign object). float16 maps are stored divided by their largest
absolute value (``scale`` (N,) float32 holds it), so every map keeps float16's full relative
precision near its peak; :func:`read_maps` returns raw values. Attributes: ``format``,
``method``, ``params`` (JSON; its layers by module name, aliases resolved), ``checkpoint_sha256``,
``input_size``, ``xiqa_version``, ``target_policy``, ``shard``, ``n_shards``, ``images_digest``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
import torch

from xiqa import __version__
from xiqa.data.cache import ImageCache
from xiqa.errors import InputError
from xiqa.io import atomic_output, open_hdf5, progress_bar
from xiqa.model.network import resolve_device, to_model_input, use_full_fp32
from xiqa.model.predict import load_model_and_cache
from xiqa.saliency import FAMILIES, explain_with_logits, resolve_method

SHARD_FORMAT = "xiqa-saliency-shard/1"
_STRING = h5py.string_dtype("utf-8")
REQUIRED_ATTRS = (
    "format",
    "method",
    "params",
    "checkpoint_sha256",
    "input_size",
    "xiqa_version",
    "target_policy",
    "shard",
    "n_shards",
    "images_digest",
)


def sha256_file(path: str | os.PathLike, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def images_digest(cache: ImageCache) -> str:
    """Identifies a cache's images (names, labels and size) without hashing every pixel."""
    digest = hashlib.sha256(f"{cache.size}\n".encode())
    digest.update("\n".join(cache.image_name).encode())
    digest.update(np.ascontiguousarray(cache.label, dtype=np.int64).tobytes())
    return digest.hexdigest()


def shard_indices(
    cache: ImageCache,
    shard: int,
    n_shards: int,
    all_images: bool = False,
    max_images: int | None = None,
) -> np.ndarray:
    """Cache rows of one shard: the positive images (or all), split into ``n_shards``
    contiguous, near-equal blocks in cache order. ``max_images`` keeps a fixed random subset
    of that many: the first of one seeded permutation, so every method with the same cap
    explains the same images, and a smaller cap's images are among a larger cap's."""
    if n_shards < 1 or not 0 <= shard < n_shards:
        raise InputError(
            f"--shard {shard} is out of range for --n-shards {n_shards} "
            f"(shards count from 0 to {n_shards - 1})"
        )
    if max_images is not None and max_images < 1:
        raise InputError(f"--max-images {max_images} must be at least 1")
    rows = np.arange(len(cache)) if all_images else np.flatnonzero(cache.label == 1)
    if max_images is not None and len(rows) > max_images:
        order = np.random.default_rng(0).permutation(len(rows))
        rows = np.sort(rows[order[:max_images]])
    return np.array_split(rows, n_shards)[shard]


class ShardWriter:
    """Appends maps to an open shard file; see :func:`write_shard`."""

    def __init__(self, h5: h5py.File, n: int, size: int, dtype: str):
        self.h5, self.n, self.dtype, self.count = h5, n, dtype, 0
        self.maps = h5.create_dataset(
            "maps",
            (n, size, size),
            dtype=dtype,
            chunks=(1, size, size),
            compression="gzip",
            compression_opts=4,
            shuffle=True,
        )
        self.scales, self.targets, self.probs = [], [], []

    def append(self, maps: np.ndarray, targets: np.ndarray, probs: np.ndarray) -> None:
        """Raw maps (B, S, S) of the next B images, their target classes and P(object)."""
        scale = np.ones(len(maps), np.float32)
        if self.dtype == "float16":  # each map relative to its peak: full precision there
            peak = np.abs(maps).reshape(len(maps), -1).max(1)
            scale = np.where(peak > 0, peak, 1).astype(np.float32)
        self.maps[self.count : self.count + len(maps)] = maps / scale[:, None, None]
        self.count += len(maps)
        self.scales.append(scale)
        self.targets.append(np.asarray(targets, np.int64))
        self.probs.append(np.asarray(probs, np.float32))

    def close(self) -> None:
        if self.count != self.n:
            raise RuntimeError(f"shard got {self.count} maps, expected {self.n}")
        for key, parts, dtype in (
            ("scale", self.scales, np.float32),
            ("target", self.targets, np.int64),
            ("prob", self.probs, np.float32),
        ):
            self.h5[key] = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


@contextlib.contextmanager
def write_shard(
    out: str | os.PathLike,
    names: list[str],
    index: np.ndarray,
    attrs: dict[str, Any],
    dtype: str = "float16",
) -> Iterator[ShardWriter]:
    """Write a shard atomically: yields a writer to append the maps of ``names`` (cache rows
    ``index``) in order; ``attrs`` are the shard's attributes besides format and version."""
    if dtype not in ("float16", "float32"):
        raise InputError(f"unknown map dtype {dtype!r}; use float16 or float32")
    with atomic_output(out) as tmp, h5py.File(tmp, "w") as h5:
        writer = ShardWriter(h5, len(names), attrs["input_size"], dtype)
        yield writer
        writer.close()
        h5["image_name"] = np.array(names, dtype=_STRING)
        h5["index"] = np.asarray(index, np.int64)
        h5.attrs.update(format=SHARD_FORMAT, xiqa_version=__version__, **attrs)


def run_saliency(
    model_path: str | os.PathLike,
    images_path: str | os.PathLike,
    method: str,
    shard: int,
    n_shards: int,
    out: str | os.PathLike,
    params: dict[str, Any] | None = None,
    target_policy: str = "label",
    all_images: bool = False,
    batch_size: int = 16,
    device: str = "auto",
    dtype: str = "float16",
    max_images: int | None = None,
) -> int:
    """Explain one shard of a cache with one method and write the shard file atomically.
    Returns the number of maps."""
    if target_policy not in ("label", "predicted"):
        raise InputError(f"unknown target policy {target_policy!r}; use label or predicted")
    family, resolved = resolve_method(method, params)
    dev = resolve_device(device)
    use_full_fp32(dev)
    model, cache = load_model_and_cache(model_path, images_path, dev)
    # The layers by module name (aliases resolved): the params attribute says what was probed.
    resolved = FAMILIES[family].resolve_layers(method, model, resolved)
    rows = shard_indices(cache, shard, n_shards, all_images, max_images)
    attrs = {
        "method": method,
        "params": json.dumps({"family": family, **resolved}, sort_keys=True),
        "checkpoint_sha256": sha256_file(model_path),
        "input_size": cache.size,
        "target_policy": target_policy,
        "shard": shard,
        "n_shards": n_shards,
        "images_digest": images_digest(cache),
        "max_images": max_images or 0,  # 0: no cap
    }
    names = [cache.image_name[i] for i in rows]
    with write_shard(out, names, rows, attrs, dtype) as writer:
        batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
        for batch in progress_bar(iterable=batches, desc=f"{method} shard {shard}", unit="batch"):
            x = to_model_input(torch.from_numpy(cache.images[batch]).to(dev))
            target = torch.from_numpy(cache.label[batch]).to(dev)
            if target_policy == "predicted":
                with torch.inference_mode():
                    target = model(x).argmax(1)
            result, logits = explain_with_logits(model, x, target, family, **resolved)
            probs = torch.softmax(logits.float(), 1)[:, 1]
            writer.append(result.cpu().numpy(), target.cpu().numpy(), probs.cpu().numpy())
    return len(rows)


@dataclass
class Shard:
    """A shard read back: raw maps and their metadata."""

    path: str
    maps: np.ndarray  # (N, S, S) float32, raw values
    image_name: list[str]
    index: np.ndarray
    target: np.ndarray
    prob: np.ndarray
    attrs: dict[str, Any]


def read_shard(path: str | os.PathLike, expect: dict[str, Any] | None = None) -> Shard:
    """Read a shard, checking its layout and that each attribute in ``expect`` matches."""
    with open_hdf5(path, "saliency shard") as h5:
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in h5.attrs.items()}
        attrs.setdefault("max_images", 0)  # shards of xiqa before the cap existed
        if attrs.get("format") != SHARD_FORMAT:
            raise InputError(f"{path}: not an xiqa saliency shard (format {attrs.get('format')!r})")
        missing = [k for k in REQUIRED_ATTRS if k not in attrs]
        missing += [
            k for k in ("maps", "image_name", "index", "target", "prob", "scale") if k not in h5
        ]
        if missing:
            raise InputError(f"{path}: saliency shard lacks {', '.join(missing)}")
        try:
            maps = h5["maps"][()].astype(np.float32) * h5["scale"][()][:, None, None]
            shard = Shard(
                str(path),
                maps,
                [n.decode() for n in h5["image_name"][()]],
                h5["index"][()],
                h5["target"][()],
                h5["prob"][()],
                attrs,
            )
        except OSError as exc:
            raise InputError(f"{path}: saliency shard is truncated or corrupt ({exc})") from None
    n, size = len(shard.image_name), attrs["input_size"]
    if shard.maps.shape != (n, size, size) or not (
        len(shard.index) == len(shard.target) == len(shard.prob) == n
    ):
        raise InputError(f"{path}: saliency shard datasets disagree in length or size")
    for key, value in (expect or {}).items():
        if attrs.get(key) != value:
            raise InputError(f"{path}: shard has {key} {attrs.get(key)!r}, expected {value!r}")
    return shard


def read_maps(paths: list[str | os.PathLike], names: set[str]) -> dict[str, np.ndarray]:
    """Raw maps of the named images from a method's shards, reading only those maps."""
    found = {}
    for path in paths:
        with open_hdf5(path, "saliency shard") as h5:
            shard_names = [n.decode() for n in h5["image_name"][()]]
            scale = h5["scale"][()]
            for k, name in enumerate(shard_names):
                if name in names:
                    found[name] = h5["maps"][k].astype(np.float32) * scale[k]
    return found
