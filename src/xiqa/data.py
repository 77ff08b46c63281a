"""Object-CXR on disk: the annotation grammar, the dataset reader and image decoding.

A dataset root holds ``train.csv`` and ``dev.csv`` (and optionally ``test.csv``), each with the
columns ``image_name,annotation``, and the images of each split either as a folder
(``train/00001.jpg``) or as the distributed archive (``train.zip`` holding ``train/00001.jpg``),
which is read in place, never extracted.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from xiqa.errors import InputError

SHAPE_KINDS = ("rectangle", "ellipse", "polygon")  # type codes 0, 1, 2
DATASET_SPLITS = ("train", "dev", "test")
# The largest Object-CXR radiograph has about 8.7 megapixels; a header declaring far more is a
# decompression bomb, refused before any pixel is decoded.
MAX_IMAGE_PIXELS = 64_000_000
_INTEGER = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Shape:
    """One annotated object, in original-image pixels."""

    kind: str
    points: tuple[tuple[int, int], ...]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Axis-aligned bounding box (x0, y0, x1, y1) of the shape's points."""
        xs = [x for x, _ in self.points]
        ys = [y for _, y in self.points]
        return min(xs), min(ys), max(xs), max(ys)


def parse_annotation(text: str) -> list[Shape]:
    """Parse an Object-CXR annotation: ``TYPE c1 c2 ...`` objects separated by ``;``.

    TYPE 0 is a rectangle and 1 an ellipse, both given by ``x1 y1 x2 y2``; 2 is a polygon
    ``x1 y1 ... xn yn``. An empty text is a negative image (no shapes). Raises ``ValueError``
    saying which object is malformed and how.
    """
    if not text.strip():
        return []
    shapes = []
    for number, obj in enumerate(text.split(";"), start=1):
        fields = obj.split()
        if not fields:
            raise ValueError(f"object {number} is empty (nothing between ';' separators)")
        code, coords = fields[0], fields[1:]
        if code not in ("0", "1", "2"):
            raise ValueError(
                f"object {number}: unknown shape type {code!r} "
                "(expected 0 rectangle, 1 ellipse or 2 polygon)"
            )
        kind = SHAPE_KINDS[int(code)]
        for value in coords:
            if not _INTEGER.fullmatch(value):
                raise ValueError(
                    f"object {number}: coordinate {value!r} is not a non-negative integer"
                )
        values = [int(v) for v in coords]
        if kind == "polygon":
            if len(values) % 2:
                raise ValueError(
                    f"object {number}: a polygon needs x y pairs, got an odd number "
                    f"({len(values)}) of coordinates"
                )
            if len(values) < 6:
                raise ValueError(
                    f"object {number}: a polygon needs at least 3 points, got {len(values) // 2}"
                )
        else:
            if len(values) != 4:
                article = "an" if kind == "ellipse" else "a"
                raise ValueError(
                    f"object {number}: {article} {kind} needs 4 coordinates (x1 y1 x2 y2), "
                    f"got {len(values)}"
                )
            x1, y1, x2, y2 = values
            if x2 < x1 or y2 < y1:
                raise ValueError(
                    f"object {number}: {kind} corners are reversed "
                    f"(x1 {x1}, y1 {y1}, x2 {x2}, y2 {y2}; need x1 <= x2 and y1 <= y2)"
                )
        shapes.append(Shape(kind, tuple(zip(values[::2], values[1::2], strict=True))))
    return shapes


def format_annotation(shapes: list[Shape]) -> str:
    """The inverse of :func:`parse_annotation`."""
    return ";".join(
        " ".join([str(SHAPE_KINDS.index(s.kind))] + [f"{x} {y}" for x, y in s.points])
        for s in shapes
    )


# ---------------------------------------------------------------------------------------------
# Images: a plain file, or a member of a zip archive read in place.


@dataclass(frozen=True)
class ImageRef:
    """Where an image's bytes are: a file ``path``, or ``member`` of the zip archive at ``path``."""

    path: str
    member: str = ""

    def __str__(self) -> str:
        return f"{self.path}:{self.member}" if self.member else self.path


_open_archives: dict[tuple[int, str], zipfile.ZipFile] = {}


def _archive(path: str) -> zipfile.ZipFile:
    # One handle per process: a handle inherited across fork would share its file offset.
    key = (os.getpid(), path)
    if key not in _open_archives:
        try:
            _open_archives[key] = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as exc:
            raise InputError(f"{path}: not a readable zip archive ({exc})") from None
    return _open_archives[key]


def _open_stream(ref: ImageRef) -> IO[bytes]:
    """A binary stream over the image's bytes (read lazily); missing or empty is an error."""
    try:
        if ref.member:
            archive = _archive(ref.path)
            empty = archive.getinfo(ref.member).file_size == 0
            stream = archive.open(ref.member)
        else:
            stream = open(ref.path, "rb")  # noqa: SIM115 -- returned to a context manager
            empty = os.fstat(stream.fileno()).st_size == 0
    except KeyError:
        raise InputError(f"{ref}: image not found in the archive") from None
    except FileNotFoundError:
        raise InputError(f"{ref}: image file not found") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"{ref}: cannot read image ({exc})") from None
    if empty:
        stream.close()
        raise InputError(f"{ref}: image file is empty (0 bytes)")
    return stream


@contextlib.contextmanager
def open_image(ref: ImageRef) -> Iterator[Image.Image]:
    """The image opened lazily (only its header read), checked to be a sane 8-bit radiograph."""
    with _open_stream(ref) as stream:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(stream)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputError(f"{ref}: declared image size is absurd (decompression bomb)") from None
        except (OSError, SyntaxError, ValueError, zipfile.BadZipFile) as exc:
            raise InputError(f"{ref}: not a readable image ({exc})") from None
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise InputError(
                f"{ref}: declared image size {width}x{height} is absurd "
                f"(over {MAX_IMAGE_PIXELS:,} pixels: decompression bomb?)"
            )
        if image.mode not in ("L", "RGB"):
            raise InputError(
                f"{ref}: unsupported image mode {image.mode!r} (expected 8-bit greyscale 'L')"
            )
        yield image


def image_size(ref: ImageRef) -> tuple[int, int]:
    """(width, height) from the image header, without decoding pixels."""
    with open_image(ref) as image:
        return image.size


def resize_square(image: Image.Image, size: int) -> np.ndarray:
    """The model's view of a radiograph: grey, resized to ``size``×``size`` (aspect ratio
    ignored) with Lanczos, as uint8. The cache and ``xiqa explain`` both resize through here."""
    grey = image.convert("L").resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(grey, dtype=np.uint8)


@contextlib.contextmanager
def decoding_errors(ref: ImageRef | str) -> Iterator[None]:
    """Pixel decoding that fails (truncated or corrupt data) raises an InputError naming ``ref``."""
    try:
        yield
    except (OSError, SyntaxError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{ref}: truncated or corrupt image ({exc})") from None


def decode_image(ref: ImageRef, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode an image once, resized by :func:`resize_square`, and return it with the original
    (width, height).

    JPEG draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is small, which
    is most of the cost saved; Lanczos then resamples to the exact size.
    """
    with open_image(ref) as image, decoding_errors(ref):
        original_size = image.size
        image.draft("L", (size, size))
        resized = resize_square(image, size)
    return resized, original_size


# ---------------------------------------------------------------------------------------------
# The dataset: CSVs plus image folders or archives.


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


def check_shapes_inside(shapes: list[Shape] | tuple[Shape, ...], width: int, height: int) -> None:
    """Every point must lie on the image (0..width, 0..height); raises ``ValueError``."""
    for number, shape in enumerate(shapes, start=1):
        x0, y0, x1, y1 = shape.box
        if x1 > width or y1 > height:
            raise ValueError(
                f"object {number}: {shape.kind} reaches ({x1}, {y1}), outside the "
                f"{width}x{height} image"
            )


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
            members = set(_archive(str(archive)).namelist())

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
