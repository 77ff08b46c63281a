"""Split manifests: val = the challenge's dev set; test = ``test.csv``, or a stratified,
seeded carve-out of train when the dataset (like the public release) has no test labels."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd

from xiqa.data.annotation import check_shapes_inside
from xiqa.data.images import ImageRef, image_size
from xiqa.data.objectcxr import ObjectCXR, Record, read_annotation_csv
from xiqa.errors import InputError
from xiqa.io import progress_bar, write_csv

MANIFEST_COLUMNS = (
    "image_name",
    "annotation",
    "label",
    "width",
    "height",
    "path",
    "member",
    "source",
)
MANIFEST_SPLITS = ("train", "val", "test")


def stratified_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` items drawn without replacement, each label in its proportion.

    Per-label counts are rounded by largest remainder so they add up to ``n`` exactly.
    """
    labels = np.asarray(labels)
    if not 0 < n < len(labels):
        raise InputError(
            f"--test-size {n} must be between 1 and {len(labels) - 1}: the "
            f"train split it is carved from has {len(labels)} images"
        )
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quotas = counts * n / len(labels)
    take = np.floor(quotas).astype(int)
    for i in np.argsort(-(quotas - take), kind="stable")[: n - take.sum()]:
        take[i] += 1
    chosen = [
        rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def with_size(record: Record) -> Record:
    """The record with its original width and height read from the image header, and its shapes
    checked to lie on the image."""
    try:
        width, height = image_size(record.image)
    except InputError as exc:
        raise InputError(f"{record.where}: {exc}") from None
    try:
        check_shapes_inside(record.shapes, width, height)
    except ValueError as exc:
        raise InputError(f"{record.where}: {exc}") from None
    return dataclasses.replace(record, width=width, height=height)


def make_splits(
    dataset: str | os.PathLike, test_size: int = 1000, seed: int = 0
) -> dict[str, list[Record]]:
    """The train, val and test records of an Object-CXR root, each image's size read."""
    data = ObjectCXR(dataset)
    train, val = data.records("train"), data.records("dev")
    if "test" in data.splits:
        test = data.records("test")
    else:
        chosen = set(stratified_sample([r.label for r in train], test_size, seed).tolist())
        test = [r for i, r in enumerate(train) if i in chosen]
        train = [r for i, r in enumerate(train) if i not in chosen]
    splits = {"train": train, "val": val, "test": test}
    owner: dict[str, str] = {}
    for records in splits.values():
        for record in records:
            if record.image_name in owner:
                raise InputError(
                    f"{record.where}: image {record.image_name!r} is also in "
                    f"{owner[record.image_name]} (splits must not overlap)"
                )
            owner[record.image_name] = record.where
    total = sum(len(r) for r in splits.values())
    with progress_bar(total=total, desc="reading image headers", unit="img") as bar:
        for split, records in splits.items():
            sized = []
            for record in records:
                sized.append(with_size(record))
                bar.update()
            splits[split] = sized
    return splits


def write_manifest(records: list[Record], path: str | os.PathLike) -> None:
    """One manifest CSV (columns :data:`MANIFEST_COLUMNS`), written atomically."""
    rows = [
        (
            r.image_name,
            r.annotation,
            r.label,
            r.width,
            r.height,
            r.image.path,
            r.image.member,
            r.source,
        )
        for r in records
    ]
    # object dtype: each cell written as itself (a column of ints with a gap stays ints)
    write_csv(pd.DataFrame(rows, columns=MANIFEST_COLUMNS, dtype=object), path)


def read_manifest(path: str | os.PathLike) -> list[Record]:
    """A split manifest back as records, every field checked (errors name file and line)."""
    records = []
    for where, row, shapes in read_annotation_csv(Path(path), MANIFEST_COLUMNS):
        try:
            width, height, label = int(row["width"]), int(row["height"]), int(row["label"])
        except ValueError:
            raise InputError(f"{where}: width, height and label must be integers") from None
        if width < 1 or height < 1:
            raise InputError(f"{where}: image size {width}x{height} is not positive")
        if label != int(bool(shapes)):
            raise InputError(
                f"{where}: label {label} disagrees with the annotation ({len(shapes)} objects)"
            )
        try:
            check_shapes_inside(shapes, width, height)
        except ValueError as exc:
            raise InputError(f"{where}: {exc}") from None
        ref = ImageRef(row["path"], row["member"])
        records.append(
            Record(
                row["image_name"],
                row["annotation"],
                tuple(shapes),
                ref,
                row["source"],
                where,
                width,
                height,
            )
        )
    if not records:
        raise InputError(f"{path}: manifest has no images")
    return records
