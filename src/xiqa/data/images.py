"""Images on disk: a plain file, or a member of a zip archive read in place; decoding to grey
S×S arrays with one-line errors."""

from __future__ import annotations

import contextlib
import os
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np
from PIL import Image

from xiqa.errors import InputError

# The largest Object-CXR radiograph has about 8.7 megapixels; a header declaring far more is a
# decompression bomb, refused before any pixel is decoded.
MAX_IMAGE_PIXELS = 64_000_000


@dataclass(frozen=True)
class ImageRef:
    """Where an image's bytes are: a file ``path``, or ``member`` of the zip archive at ``path``."""

    path: str
    member: str = ""

    def __str__(self) -> str:
        return f"{self.path}:{self.member}" if self.member else self.path


_open_archives: dict[tuple[int, str], zipfile.ZipFile] = {}


def open_archive(path: str) -> zipfile.ZipFile:
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
            archive = open_archive(ref.path)
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
