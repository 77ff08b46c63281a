"""The Pointing Game (docs/protocol.md §4), computed from box geometry, the energy-based pointing
game, and ``xiqa pointing``.

Per image, in the model-input space: the peak is the first maximum of the map in row-major order;
a box covers the integer pixels int(x0) <= x < int(x1), int(y0) <= y < int(y1) (truncated,
right/bottom edge exclusive; a box that truncates to zero width or height has none); the map
hits when some box pixel lies at distance < tau from the peak. Images without a non-empty box do
not count.

The energy-based pointing game (Wang et al., Score-CAM, CVPRW 2020) scores the whole map, not its
peak: the share of the map's mass that lies on box pixels (the union of the boxes, each pixel
once, the same pixels as above, clipped to the map). Mass is the map's positive part: negative
values (evidence against the class, in signed maps) count as zero, so the share lies in [0, 1];
a map without positive mass has no share (NaN). A uniform map scores the boxes' area share.

Smoothed variants (the authors' follow-up study, arXiv 2303.14479): the map blurred by a
Gaussian of standard deviation sigma px on a kernel of ``kernel`` px (odd; by default
2 * ceil(3 sigma) + 1), mirrored at the edges, in float64, before the peak is taken; each
smoothing adds its own peak, distance and hit columns. Other tolerances need no new columns: the
distance is kept at full precision and re-thresholded by the tables.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from xiqa.data.cache import ImageCache, load_cache
from xiqa.errors import InputError
from xiqa.evaluation.shards import Shard, images_digest, read_shard, sha256_file
from xiqa.io import progress_bar, write_csv

POINTING_COLUMNS = (
    "image_name",
    "peak_x",
    "peak_y",
    "n_ties",
    "distance",
    "hit",
    "label",
    "prob",
    "counted",
    "n_boxes",
    "energy",
    "box_share",
)
# The columns each smoothing adds, each name with the smoothing's suffix (Smoothing.columns).
SMOOTHED_COLUMNS = ("peak_x", "peak_y", "n_ties", "distance", "hit")
# Attributes every shard of one method and split must share.
SHARED_ATTRS = (
    "method",
    "params",
    "checkpoint_sha256",
    "input_size",
    "target_policy",
    "n_shards",
    "images_digest",
    "max_images",
)


def peak(saliency_map: np.ndarray) -> tuple[int, int, int]:
    """(x, y) of the first maximum in row-major order, and how many pixels tie with it."""
    flat = np.asarray(saliency_map).ravel()
    if not np.isfinite(flat).all():
        raise ValueError("saliency map has NaN or infinite values")
    index = int(np.argmax(flat))
    ties = int(np.count_nonzero(flat == flat[index]))
    y, x = divmod(index, saliency_map.shape[1])
    return x, y, ties


@dataclass(frozen=True)
class Smoothing:
    """A Gaussian blur of the map before its peak is taken: standard deviation ``sigma`` and an
    odd ``kernel`` size, both in map pixels."""

    sigma: float
    kernel: int

    @classmethod
    def parse(cls, text: str) -> Smoothing:
        """'SIGMA' or 'SIGMA:KERNEL' (the kernel by default 2 * ceil(3 sigma) + 1)."""
        sigma_text, _, kernel_text = str(text).partition(":")
        try:
            sigma = float(sigma_text)
            kernel = int(kernel_text) if kernel_text else None
        except ValueError:
            raise InputError(f"--smooth {text!r}: not SIGMA or SIGMA:KERNEL") from None
        if not (math.isfinite(sigma) and sigma > 0):
            raise InputError(f"--smooth {text!r}: sigma must be a positive number")
        if kernel is None:
            kernel = 2 * math.ceil(3 * sigma) + 1
        if kernel < 1 or kernel % 2 == 0:
            raise InputError(f"--smooth {text!r}: the kernel must be an odd number of pixels")
        return cls(sigma, kernel)

    @property
    def suffix(self) -> str:
        """The name of its columns and table entries, e.g. g1k7 for sigma 1 on 7x7 px."""
        return f"g{self.sigma:g}k{self.kernel}"

    def columns(self) -> list[str]:
        return [f"{name}_{self.suffix}" for name in SMOOTHED_COLUMNS]

    def apply(self, saliency_map: np.ndarray) -> np.ndarray:
        """The blurred map, float64: scipy's separable Gaussian, its weights normalised over the
        kernel's (kernel - 1) / 2 px radius, the map mirrored at its edges without repeating
        the edge pixel (d c b | a b c d: torchvision's gaussian_blur, OpenCV's default)."""
        from scipy.ndimage import gaussian_filter

        return gaussian_filter(
            np.asarray(saliency_map, dtype=np.float64),
            self.sigma,
            mode="mirror",
            radius=(self.kernel - 1) // 2,
        )


def parse_smoothings(texts: Sequence[str]) -> list[Smoothing]:
    """:meth:`Smoothing.parse` of each text; the same smoothing twice is an error."""
    smoothings = [Smoothing.parse(t) for t in texts]
    suffixes = [s.suffix for s in smoothings]
    repeated = sorted({s for s in suffixes if suffixes.count(s) > 1})
    if repeated:
        raise InputError(f"--smooth: {repeated[0]} is given twice")
    return smoothings


def box_pixel_bounds(boxes: np.ndarray) -> np.ndarray:
    """(K, 4) int64 x_lo, y_lo, x_hi, y_hi: box k covers columns x_lo <= x < x_hi and rows
    y_lo <= y < y_hi (each coordinate truncated towards zero)."""
    return np.trunc(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)).astype(np.int64)


def box_distances(x: int, y: int, boxes: np.ndarray) -> np.ndarray:
    """Distance from pixel (x, y) to the nearest pixel of each box (inf for empty boxes)."""
    x_lo, y_lo, x_hi, y_hi = box_pixel_bounds(boxes).T  # pixels x_lo .. x_hi - 1
    dx = np.maximum(np.maximum(x_lo - x, x - (x_hi - 1)), 0)
    dy = np.maximum(np.maximum(y_lo - y, y - (y_hi - 1)), 0)
    distance = np.hypot(dx, dy)
    return np.where((x_hi > x_lo) & (y_hi > y_lo), distance, np.inf)


def nearest_box_distance(x: int, y: int, boxes: np.ndarray) -> float:
    """Distance from (x, y) to the nearest pixel of any box; inf when no box has pixels."""
    return float(box_distances(x, y, boxes).min(initial=np.inf))


def pointing_hit(
    saliency_map: np.ndarray, boxes: np.ndarray, tau: float
) -> tuple[bool, int, int, float]:
    """(hit, peak_x, peak_y, distance) for one 2-D map and boxes (K, 4) = x0, y0, x1, y1 in map
    pixels; distance is to the nearest box pixel (inf when no box has pixels, which is no hit).
    """
    x, y, _ = peak(saliency_map)
    distance = nearest_box_distance(x, y, boxes)
    return distance < tau, x, y, distance


def box_mask(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) mask of the pixels of a map of ``shape`` that some box covers."""
    height, width = shape
    mask = np.zeros((height, width), dtype=bool)
    for x_lo, y_lo, x_hi, y_hi in box_pixel_bounds(boxes):
        mask[max(y_lo, 0) : max(y_hi, 0), max(x_lo, 0) : max(x_hi, 0)] = True
    return mask


def energy_share(saliency_map: np.ndarray, boxes: np.ndarray) -> float:
    """Energy-based pointing game: the share of the map's positive mass on box pixels (NaN when
    the map has no positive mass)."""
    return mass_share(saliency_map, box_mask(boxes, np.shape(saliency_map)))


def mass_share(saliency_map: np.ndarray, mask: np.ndarray) -> float:
    """The share of the map's positive mass on the pixels of ``mask`` (NaN without mass)."""
    mass = np.clip(np.asarray(saliency_map, dtype=np.float64), 0, None)
    total = mass.sum()
    if not total > 0:
        return math.nan
    return float(mass[mask].sum() / total)


def read_method_shards(
    cache: ImageCache,
    shard_paths: Sequence[str | os.PathLike],
    model_path: str | os.PathLike | None = None,
) -> Iterator[Shard]:
    """Yield one method's shards of one split, read one at a time, refusing shards that
    disagree with each other, whose images are not ``cache``'s, or (given ``model_path``) that
    were not made by that checkpoint; after the last, refuses a missing shard."""
    if not shard_paths:
        raise InputError("no saliency shards given")
    expect = {"images_digest": images_digest(cache), "input_size": cache.size}
    if model_path is not None:
        if not os.path.isfile(model_path):
            raise InputError(f"{model_path}: model not found")
        expect["checkpoint_sha256"] = sha256_file(model_path)
    first = None
    seen_shards: dict[int, str] = {}
    for path in shard_paths:
        shard = read_shard(path, expect=expect)
        if first is None:
            first = shard.attrs | {"path": shard.path}
        for key in SHARED_ATTRS:
            if shard.attrs[key] != first[key]:
                raise InputError(
                    f"{path}: {key} {shard.attrs[key]!r} differs from "
                    f"{first['path']}'s {first[key]!r}"
                )
        number = shard.attrs["shard"]
        if number in seen_shards:
            raise InputError(f"{path}: shard {number} is also given as {seen_shards[number]}")
        seen_shards[number] = str(path)
        for k, index in enumerate(shard.index):
            if not 0 <= index < len(cache):
                raise InputError(
                    f"{path}: map {k} is of {shard.image_name[k]!r}, not of row {index} of "
                    f"{cache.path} (which has {len(cache)})"
                )
            if cache.image_name[index] != shard.image_name[k]:
                raise InputError(
                    f"{path}: map {k} is of {shard.image_name[k]!r} but row {index} "
                    f"of {cache.path} is {cache.image_name[index]!r}"
                )
        yield shard
    expected = set(range(first["n_shards"]))
    if set(seen_shards) != expected:
        raise InputError(
            f"shards {sorted(expected - set(seen_shards))} of {first['method']!r} are missing"
        )


def method_maps(
    cache: ImageCache,
    shard_paths: Sequence[str | os.PathLike],
    model_path: str | os.PathLike | None,
    desc: str,
) -> Iterator[tuple[Shard, int, int]]:
    """(shard, k, cache row) for every map of one method's shards (:func:`read_method_shards`),
    with a progress bar over the shards."""
    shards = read_method_shards(cache, shard_paths, model_path)
    for shard in progress_bar(iterable=shards, total=len(shard_paths), desc=desc, unit="shard"):
        for k, index in enumerate(shard.index):
            yield shard, k, int(index)


def run_pointing(
    images_path: str | os.PathLike,
    shard_paths: Sequence[str | os.PathLike],
    tau: float,
    out: str | os.PathLike,
    model_path: str | os.PathLike | None = None,
    smoothings: Sequence[Smoothing] = (),
) -> dict[str, float]:
    """Score every map of one method's shards against the cache's boxes, also after each of
    ``smoothings``; write the per-image CSV. Refuses shards that disagree with each other, whose
    images are not the cache's, or (given ``model_path``) that were not made by that checkpoint.
    """
    if not tau > 0:
        raise InputError(f"--tau {tau}: the tolerance must be positive")
    cache = load_cache(images_path, with_images=False)
    rows = []
    for shard, k, index in method_maps(cache, shard_paths, model_path, "pointing"):
        boxes = cache.boxes_of(index)
        try:
            scored = _peak_columns(shard.maps[k], boxes, tau)
        except ValueError as exc:
            raise InputError(f"{shard.path}: map of {shard.image_name[k]!r}: {exc}") from None
        counted = scored["counted"]
        mask = box_mask(boxes, shard.maps[k].shape)
        row = {
            "image_name": shard.image_name[k],
            **{c: scored[c] for c in SMOOTHED_COLUMNS},
            "label": int(cache.label[index]),
            "prob": f"{shard.prob[k]:.6f}",
            "counted": int(counted),
            "n_boxes": len(boxes),
            "energy": mass_share(shard.maps[k], mask) if counted else math.nan,  # NaN: no mass
            "box_share": float(mask.mean()) if counted else math.nan,
        }
        for smoothing in smoothings:
            blurred = _peak_columns(smoothing.apply(shard.maps[k]), boxes, tau)
            row |= {f"{c}_{smoothing.suffix}": blurred[c] for c in SMOOTHED_COLUMNS}
        rows.append(row)
    extra = [c for smoothing in smoothings for c in smoothing.columns()]
    hits = ["hit", *(c for c in extra if c.startswith("hit_"))]
    frame = pd.DataFrame(rows, columns=[*POINTING_COLUMNS, *extra]).astype(
        dict.fromkeys(hits, "Int64")
    )
    write_csv(frame, out)
    counted = frame[frame["counted"] == 1]
    return {
        "n": len(counted),
        "hits": int(counted["hit"].sum()),
        "mean_energy": float(counted["energy"].mean()),  # NaN when no map has mass
    }


def _peak_columns(saliency_map: np.ndarray, boxes: np.ndarray, tau: float) -> dict[str, Any]:
    """A map's peak_x, peak_y, n_ties, distance and hit cells of the CSV, and whether the image
    counts (some box has pixels; else distance NaN and hit empty)."""
    x, y, ties = peak(saliency_map)
    distance = nearest_box_distance(x, y, boxes)
    counted = bool(np.isfinite(distance))
    return {
        "peak_x": x,
        "peak_y": y,
        "n_ties": ties,
        # Full precision: the tables re-threshold it at other tolerances.
        "distance": distance if counted else math.nan,
        "hit": int(distance < tau) if counted else None,
        "counted": counted,
    }
