"""The HDF5 image cache: every radiograph decoded once, resized to S×S, boxes scaled to match.

Layout (docs/formats.md):
``images`` uint8 (N, S, S), one chunk per image; ``image_name`` (N,) utf-8;
``label`` (N,); ``width``, ``height`` (N,) original size; ``boxes`` float32 (M, 5) = image index,
x0, y0, x1, y1 in cache pixels (each shape's bounding box scaled by S/W and S/H); plus the raw
``annotation`` strings. Attributes: ``format``, ``image_size``, ``xiqa_version``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from xiqa import __version__
from xiqa.data.annotation import Shape, parse_annotation
from xiqa.data.images import ImageRef, decode_image
from xiqa.data.objectcxr import Record
from xiqa.data.split import read_manifest
from xiqa.errors import InputError
from xiqa.io import atomic_output, open_hdf5, progress_bar, worker_pool

CACHE_FORMAT = "xiqa-image-cache/1"
_STRING = h5py.string_dtype("utf-8")


def scaled_boxes(records: list[Record], size: int) -> np.ndarray:
    """(M, 5) float32 rows (image index, x0, y0, x1, y1): each shape's box scaled to S×S."""
    rows = [
        (
            index,
            x0 * size / r.width,
            y0 * size / r.height,
            x1 * size / r.width,
            y1 * size / r.height,
        )
        for index, r in enumerate(records)
        for x0, y0, x1, y1 in (shape.box for shape in r.shapes)
    ]
    return np.asarray(rows, dtype=np.float32).reshape(-1, 5)


def _decode(job: tuple[ImageRef, int, int, int, str]) -> np.ndarray:
    ref, size, width, height, where = job
    try:
        image, original_size = decode_image(ref, size)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    if original_size != (width, height):
        raise InputError(
            f"{where}: {ref} is {original_size[0]}x{original_size[1]}, the "
            f"manifest says {width}x{height} (re-run xiqa split)"
        )
    return image


def prepare_cache(
    manifest: str | os.PathLike, size: int, out: str | os.PathLike, num_workers: int | None = None
) -> int:
    """Decode every image of a manifest into the HDF5 cache at ``out`` (atomically).

    Returns the number of images. ``num_workers`` processes decode in parallel (default: all
    cores); rows keep the manifest's order.
    """
    if size < 8:
        raise InputError(f"--size {size}: the cache image size must be at least 8 pixels")
    records = read_manifest(manifest)
    workers = max(1, min(num_workers or os.cpu_count() or 1, len(records)))
    jobs = [(r.image, size, r.width, r.height, r.where) for r in records]
    with atomic_output(out) as tmp, h5py.File(tmp, "w") as h5:
        images = h5.create_dataset(
            "images", (len(records), size, size), dtype=np.uint8, chunks=(1, size, size)
        )
        h5["image_name"] = np.array([r.image_name for r in records], dtype=_STRING)
        h5["annotation"] = np.array([r.annotation for r in records], dtype=_STRING)
        h5["label"] = np.array([r.label for r in records], dtype=np.int64)
        h5["width"] = np.array([r.width for r in records], dtype=np.int64)
        h5["height"] = np.array([r.height for r in records], dtype=np.int64)
        h5["boxes"] = scaled_boxes(records, size)
        h5.attrs.update(format=CACHE_FORMAT, image_size=size, xiqa_version=__version__)
        bar = progress_bar(
            total=len(records), desc=f"decoding {os.path.basename(manifest)}", unit="img"
        )
        with bar, worker_pool(workers) as pool:
            decoded = pool.imap(_decode, jobs, chunksize=4) if pool else map(_decode, jobs)
            for index, image in enumerate(decoded):
                images[index] = image
                bar.update()
    return len(records)


@dataclass
class ImageCache:
    """A cache read into memory, checked for consistency."""

    path: str
    size: int
    images: np.ndarray | None  # (N, S, S) uint8; None when loaded without pixels
    image_name: list[str]
    label: np.ndarray
    width: np.ndarray
    height: np.ndarray
    boxes: np.ndarray  # (M, 5)
    annotation: list[str] | None = None  # the manifest's annotation strings, original pixels

    def __len__(self) -> int:
        return len(self.image_name)

    def boxes_of(self, index: int) -> np.ndarray:
        """(K, 4) boxes x0, y0, x1, y1 of one image, in cache pixels."""
        return self.boxes[self.boxes[:, 0] == index, 1:]

    def shapes_of(self, index: int) -> list[Shape]:
        """The annotated shapes of one image, in original pixels."""
        if self.annotation is None:
            raise InputError(f"{self.path}: image cache lacks the dataset 'annotation'")
        return parse_annotation(self.annotation[index])


def load_cache(path: str | os.PathLike, with_images: bool = True) -> ImageCache:
    """Read and check an image cache; anything missing or inconsistent is an InputError.

    ``with_images=False`` reads everything but the pixels (``images`` is then None).
    """
    with open_hdf5(path, "image cache") as h5:
        if h5.attrs.get("format") != CACHE_FORMAT:
            raise InputError(
                f"{path}: not an xiqa image cache (format attribute "
                f"{h5.attrs.get('format')!r}, expected {CACHE_FORMAT!r})"
            )
        for key in ("images", "image_name", "label", "width", "height", "boxes"):
            if key not in h5:
                raise InputError(f"{path}: image cache lacks the dataset {key!r}")
        size = int(h5.attrs["image_size"])
        try:
            cache = ImageCache(
                path=str(path),
                size=size,
                images=h5["images"][()] if with_images else None,
                image_name=[n.decode() for n in h5["image_name"][()]],
                label=h5["label"][()],
                width=h5["width"][()],
                height=h5["height"][()],
                boxes=h5["boxes"][()],
                annotation=(
                    [a.decode() for a in h5["annotation"][()]] if "annotation" in h5 else None
                ),
            )
            shape, dtype = h5["images"].shape, h5["images"].dtype
        except OSError as exc:
            raise InputError(f"{path}: image cache is truncated or corrupt ({exc})") from None
    n = len(cache.image_name)
    if shape != (n, size, size) or dtype != np.uint8:
        raise InputError(
            f"{path}: images have shape {shape} {dtype}, expected ({n}, {size}, {size}) uint8"
        )
    if not (len(cache.label) == len(cache.width) == len(cache.height) == n) or (
        cache.annotation is not None and len(cache.annotation) != n
    ):
        raise InputError(f"{path}: label, width, height and annotation must each have {n} entries")
    if cache.boxes.ndim != 2 or cache.boxes.shape[1] != 5:
        raise InputError(f"{path}: boxes have shape {cache.boxes.shape}, expected (M, 5)")
    return cache
