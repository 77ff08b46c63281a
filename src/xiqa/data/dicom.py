"""DICOM radiographs as 8-bit grey images, the way a reading station would show them.

Stored values (pydicom ≥ 3 keeps only the low ``BitsStored`` bits, sign-extended when signed, so
junk in unused high bits is ignored) → modality LUT (Rescale Slope/Intercept or a Modality LUT
Sequence) → VOI: a VOI LUT Sequence when present (preferred over a window, as pydicom's
``apply_voi_lut`` does), else the first Window Center/Width, else the image's own minimum–maximum
→ MONOCHROME1 inverted → 0–255. The VOI output range maps linearly onto 0–255: a VOI LUT's
nominal range 0 … 2ⁿ−1 (n bits per entry), a window's the range pydicom scales it onto. Only
single-frame greyscale (MONOCHROME1/2) images are accepted; compressed pixel data needs a pydicom
decoder for its transfer syntax.
"""

from __future__ import annotations

import os

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

from xiqa.data.images import MAX_IMAGE_PIXELS
from xiqa.errors import InputError

DICOM_SUFFIXES = (".dcm", ".dicom")
_PIXEL_MODULE = ("Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation")


def is_dicom(path: str | os.PathLike) -> bool:
    """A DICOM file: the Part 10 marker ``DICM`` at byte 128, or a ``.dcm``/``.dicom`` name."""
    if str(path).lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:  # reported by the image reader, which names the file
        return False


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _read(path: str | os.PathLike) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path)
    except FileNotFoundError:
        raise InputError(f"{path}: image file not found") from None
    except Exception as exc:  # pydicom raises many types for malformed files
        raise InputError(f"{path}: not a readable DICOM file ({_one_line(exc)})") from None


def _check_greyscale_single_frame(path: str | os.PathLike, ds: pydicom.Dataset) -> None:
    if "PixelData" not in ds:
        raise InputError(f"{path}: DICOM file has no (integer) pixel data")
    photometric = ds.get("PhotometricInterpretation", "")
    if photometric not in ("MONOCHROME1", "MONOCHROME2") or ds.get("SamplesPerPixel", 1) != 1:
        raise InputError(
            f"{path}: DICOM photometric interpretation {photometric!r} with "
            f"{ds.get('SamplesPerPixel', 1)} samples per pixel is not greyscale (xiqa explains "
            "MONOCHROME1/MONOCHROME2 radiographs)"
        )
    missing = [key for key in _PIXEL_MODULE if key not in ds]
    if missing:
        raise InputError(f"{path}: DICOM image lacks {', '.join(missing)}")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise InputError(
            f"{path}: multi-frame DICOM ({frames} frames); xiqa explains single radiographs "
            "(extract the frame to explain into its own file)"
        )
    rows, columns = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows * columns > MAX_IMAGE_PIXELS:
        raise InputError(
            f"{path}: declared image size {columns}x{rows} is absurd (over "
            f"{MAX_IMAGE_PIXELS:,} pixels)"
        )


def _decoded(path: str | os.PathLike, ds: pydicom.Dataset) -> np.ndarray:
    try:
        return ds.pixel_array
    except Exception as exc:  # no decoder for the transfer syntax, or corrupt data
        syntax = ds.file_meta.get("TransferSyntaxUID", None)
        name = f"{syntax.name} ({syntax})" if syntax else "unknown"
        raise InputError(
            f"{path}: cannot decode the DICOM pixel data, transfer syntax {name}: {_one_line(exc)}"
        ) from None


def _voi_to_unit(values: np.ndarray, ds: pydicom.Dataset) -> tuple[np.ndarray, str]:
    """The VOI transform's output scaled to [0, 1], and which transform it was."""
    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        # LUT indices are integers: the floor of a rescaled (float) modality output.
        out = apply_voi(np.floor(values).astype(np.int64), ds)
        return out / ((1 << bits) - 1), "voi-lut"
    if "WindowCenter" in ds and "WindowWidth" in ds:
        # pydicom scales a window onto the modality output's nominal range (from BitsStored,
        # the signedness and the rescale); its two ends are what the window makes of ±∞.
        low, high = apply_windowing(np.array([-np.inf, np.inf]), ds)
        return (apply_windowing(values, ds) - low) / (high - low), "window"
    low, high = float(values.min()), float(values.max())
    span = high - low if high > low else 1.0
    return (values - low) / span, "min-max"


def read_dicom_grey(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """A DICOM radiograph as (H, W) uint8 grey as displayed (0 black, as in MONOCHROME2), and the
    VOI transform used: ``voi-lut``, ``window`` or ``min-max``. Problems are InputErrors naming
    the file."""
    ds = _read(path)
    _check_greyscale_single_frame(path, ds)
    stored = _decoded(path, ds)  # pydicom keeps the low BitsStored bits, sign-extended if signed
    try:
        unit, voi = _voi_to_unit(apply_modality_lut(stored, ds), ds)
    except (ValueError, NotImplementedError, AttributeError, IndexError, KeyError) as exc:
        raise InputError(f"{path}: unusable DICOM LUT or window ({_one_line(exc)})") from None
    if not np.isfinite(unit).all():
        raise InputError(f"{path}: the DICOM rescale and window give no usable grey range")
    unit = np.clip(unit, 0.0, 1.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":  # low values are bright: invert
        unit = 1.0 - unit
    return np.rint(unit * 255).astype(np.uint8), voi
