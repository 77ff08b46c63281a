"""The Object-CXR dataset on disk: its CSVs and where each image is.

A dataset root holds ``train.csv`` and ``dev.csv`` (and optionally ``test.csv``), each with the
columns ``image_name,annotation``, and the images of each split either as a folder
(``train/00001.jpg``) or as the distributed archive (``train.zip`` holding ``train/00001.jpg``),
which is read in place, never extracted.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from xiqa.data.annotation import Shape, parse_annotation
from xiqa.data.images import ImageRef, open_archive
from xiqa.errors import InputError

DATASET_SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Record:
    """One row of an Object-CXR CSV, with where its image is."""

    image_name: str
    annotation: str
    shapes: tuple[Shape, ...]
    image: ImageRef
    source: str  # the dataset split it came from: train, dev or test
    where: str  # "FILE.csv, line N", for error messages
    width: int = 0  # original size, once read from the image header
    height: int = 0

    @property
    def label(self) -> int:
        return int(bool(self.shapes))


def check_image_name(name: str) -> None:
    """An image name must be a plain file name: no directories, no '..', nothing hidden."""
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or name.startswith(".")
        or name != name.strip()
    ):
        raise ValueError(f"image_name {name!r} is not a plain file name")


def read_annotation_csv(
    path: Path, columns: tuple[str, ...] = ("image_name", "annotation")
) -> list[tuple[str, dict[str, str], list[Shape]]]:
    """Rows ``(where, fields, shapes)`` of a CSV with at least ``image_name,annotation``.

    ``where`` is "FILE, line N". Names are checked to be plain and unique, annotations parsed;
    every problem is an :class:`InputError` naming the file and line.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return _csv_rows(path, handle, columns)
    except FileNotFoundError:
        raise InputError(f"{path}: CSV file not found") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None


def _csv_rows(path, handle, columns):
    # csv, not pandas: the reader's line_num names the line of each bad row, quoted newlines too.
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        raise InputError(f"{path}: empty file (expected a header with {','.join(columns)})")
    header = [h.strip() for h in header]
    for column in columns:
        if column not in header:
            raise InputError(
                f"{path}: no {column!r} column (header is {','.join(header)!r}; "
                f"expected {','.join(columns)!r})"
            )
    rows = []
    seen: dict[str, int] = {}
    for fields in reader:
        line = reader.line_num
        where = f"{path}, line {line}"
        if not fields:
            continue
        if len(fields) != len(header):
            raise InputError(f"{where}: {len(fields)} fields, header has {len(header)}")
        row = dict(zip(header, fields, strict=True))
        name = row["image_name"]
        try:
            check_image_name(name)
            shapes = parse_annotation(row["annotation"])
        except ValueError as exc:
            raise InputError(f"{where}: {exc}") from None
        if name in seen:
            raise InputError(f"{where}: duplicate image_name {name!r} (first on line {seen[name]})")
        seen[name] = line
        rows.append((where, row, shapes))
    return rows


class ObjectCXR:
    """An Object-CXR dataset root: folders or distributed zips, with or without ``test.csv``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise InputError(f"{root}: dataset folder not found")
        for split in ("train", "dev"):
            if not (self.root / f"{split}.csv").is_file():
                raise InputError(
                    f"{root}: not an Object-CXR folder (no {split}.csv; expected train.csv, "
                    "dev.csv and the images as train/, dev/ folders or train.zip, dev.zip)"
                )

    @property
    def splits(self) -> list[str]:
        """The dataset splits present: train and dev always, test when ``test.csv`` exists."""
        return [s for s in DATASET_SPLITS if (self.root / f"{s}.csv").is_file()]

    def _locator(self, split: str):
        folder, archive = self.root / split, self.root / f"{split}.zip"
        if folder.is_dir():
            return lambda name: ImageRef(str(folder / name))
        if archive.is_file():
            members = set(open_archive(str(archive)).namelist())

            def locate(name: str) -> ImageRef:
                for member in (f"{split}/{name}", name):
                    if member in members:
                        return ImageRef(str(archive), member)
                raise InputError(f"{archive}: no member {split}/{name}")

            return locate
        raise InputError(f"{self.root}: no image folder {split}/ and no archive {split}.zip")

    def records(self, split: str) -> list[Record]:
        """The rows of one split's CSV, each with its image located (not decoded)."""
        csv_path = self.root / f"{split}.csv"
        rows = read_annotation_csv(csv_path)
        locate = self._locator(split)
        records = []
        for where, row, shapes in rows:
            try:
                ref = locate(row["image_name"])
            except InputError as exc:
                raise InputError(f"{where}: {exc}") from None
            records.append(
                Record(row["image_name"], row["annotation"], tuple(shapes), ref, split, where)
            )
        return records
