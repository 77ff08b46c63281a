"""``xiqa explain``: saliency maps of new radiographs (JPEG, PNG or DICOM) from a trained model.

Each image becomes exactly what the model saw in training: JPEG and PNG go through the image
cache's decoder (:func:`xiqa.data.decode_image`); DICOM becomes 8-bit grey (:mod:`xiqa.data.dicom`)
and is resized by the same :func:`xiqa.data.resize_square`. The target is the foreign-object
class. For each input, ``OUT/{stem}.{method}.png`` shows the map over the radiograph at its own
aspect ratio with the peak ringed, and ``OUT/{stem}.{method}.json`` records the probability, the
peak in original pixels and the provenance. Outputs appear only when every input succeeded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from xiqa import __version__
from xiqa.data.dicom import is_dicom, read_dicom_grey
from xiqa.data.geometry import input_to_original
from xiqa.data.images import ImageRef, decode_image, decoding_errors, open_image, resize_square
from xiqa.errors import InputError
from xiqa.evaluation.pointing import peak
from xiqa.evaluation.shards import sha256_file
from xiqa.io import progress_bar, staged_outputs
from xiqa.model.network import load_model, resolve_device, to_model_input, use_full_fp32
from xiqa.saliency import FAMILIES, explain_with_logits, resolve_method

FOREIGN_OBJECT = 1  # the class explained: "foreign object present"
RECORD_FORMAT = "xiqa-explanation/1"
OVERLAY_SIDE = 1024  # default longest side of an overlay PNG, in pixels
OVERLAY_ALPHA = 0.6  # opacity of the colour-mapped saliency at its peak (less where lower)
COLORMAP = "turbo"


@dataclass
class Radiograph:
    """One input, decoded: the model's view of it and a picture to draw on."""

    path: Path
    image_format: str  # "JPEG", "PNG", ... (as Pillow names it) or "DICOM"
    width: int  # original size
    height: int
    pixels: np.ndarray  # (S, S) uint8: the model input, exactly as the image cache holds it
    display: Image.Image  # grey "L", original aspect ratio, longest side <= the overlay size
    voi: str | None  # DICOM only: the grey mapping used (voi-lut, window or min-max)


def display_image(image: Image.Image, side: int) -> Image.Image:
    """A grey copy of ``image`` with its longest side at most ``side`` (aspect ratio kept)."""
    scale = min(1.0, side / max(image.size))
    target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image.draft("L", target)  # JPEG: decode at a reduced scale no smaller than the target
    grey = image.convert("L")
    return grey if grey.size == target else grey.resize(target, Image.Resampling.LANCZOS)


def read_radiograph(
    path: str | os.PathLike, size: int, overlay_side: int = OVERLAY_SIDE
) -> Radiograph:
    """Decode one JPEG, PNG or DICOM file for a model trained at ``size``×``size``."""
    path = Path(path)
    if is_dicom(path):
        grey, voi = read_dicom_grey(path)
        image = Image.fromarray(grey)
        pixels = resize_square(image, size)
        return Radiograph(
            path, "DICOM", *image.size, pixels, display_image(image, overlay_side), voi
        )
    ref = ImageRef(str(path))
    pixels, (width, height) = decode_image(ref, size)
    with open_image(ref) as image, decoding_errors(ref):
        image_format = image.format or "unknown"
        display = display_image(image, overlay_side)
    return Radiograph(path, image_format, width, height, pixels, display, None)


def explanation_record(
    radiograph: Radiograph, saliency_map: np.ndarray, prob: float, provenance: dict[str, Any]
) -> dict[str, Any]:
    """The JSON record of one explained input; ``provenance`` holds the method, its parameters,
    the checkpoint's hash, the input size and the xiqa version."""
    try:
        x, y, ties = peak(saliency_map)
    except ValueError as exc:
        raise InputError(f"{radiograph.path}: {provenance['method']}: {exc}") from None
    size = saliency_map.shape[0]
    peak_x, peak_y = input_to_original(x, y, size, radiograph.width, radiograph.height)
    return {
        "format": RECORD_FORMAT,
        "input": str(radiograph.path),
        "image_format": radiograph.image_format,
        "width": radiograph.width,
        "height": radiograph.height,
        "voi": radiograph.voi,
        "target": FOREIGN_OBJECT,
        "prob": float(prob),
        "peak_x": peak_x,
        "peak_y": peak_y,
        "peak_input_x": x,
        "peak_input_y": y,
        "n_ties": ties,
        **provenance,
    }


def _unit(saliency_map: np.ndarray) -> np.ndarray:
    low, high = float(saliency_map.min()), float(saliency_map.max())
    return (saliency_map - low) / (high - low) if high > low else np.zeros_like(saliency_map)


def _draw_peak_marker(draw: ImageDraw.ImageDraw, x: float, y: float, side: int) -> None:
    """A white ring with ticks, bordered in black, around (x, y); the peak itself stays visible."""
    radius, width, tick = max(6, side // 40), max(1, side // 300), max(3, side // 60)
    for colour, grow in (((0, 0, 0), 1), ((255, 255, 255), 0)):
        r, w = radius + grow, width + 2 * grow
        draw.ellipse((x - r, y - r, x + r, y + r), outline=colour, width=w)
        start, end = radius + 3 - grow, radius + 3 + tick + grow
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            draw.line((x + dx * start, y + dy * start, x + dx * end, y + dy * end), colour, w)


def _draw_caption(draw: ImageDraw.ImageDraw, text: str, side: int) -> None:
    """White text on a black box in the top-left corner."""
    font = ImageFont.load_default(size=max(10, side // 45))
    x0, y0, x1, y1 = draw.textbbox((4, 4), text, font=font)
    draw.rectangle((x0 - 3, y0 - 3, x1 + 3, y1 + 3), fill=(0, 0, 0))
    draw.text((4, 4), text, fill=(255, 255, 255), font=font)


def render_overlay(
    display: Image.Image, saliency_map: np.ndarray, record: dict[str, Any]
) -> Image.Image:
    """The radiograph in grey under its min–max scaled map v in a colormap (opacity
    ``OVERLAY_ALPHA``·v, so the radiograph shows where v is low), the map stretched back to the
    original aspect ratio, with the peak ringed and a caption giving P(foreign object) and the
    method."""
    heat = Image.fromarray(_unit(saliency_map).astype(np.float32)).resize(
        display.size, Image.Resampling.BILINEAR
    )
    heat = np.clip(np.asarray(heat), 0, 1)
    colours = matplotlib.colormaps[COLORMAP](heat)[..., :3]
    grey = np.asarray(display, np.float32)[..., None] / 255
    alpha = OVERLAY_ALPHA * heat[..., None]
    overlay = Image.fromarray(
        np.rint(((1 - alpha) * grey + alpha * colours) * 255).astype(np.uint8)
    )
    draw, side = ImageDraw.Draw(overlay), max(display.size)
    # The peak in display pixels: its original coordinates scaled like the picture.
    x = record["peak_x"] * display.width / record["width"]
    y = record["peak_y"] * display.height / record["height"]
    _draw_peak_marker(draw, x, y, side)
    _draw_caption(draw, f"P(foreign object) {record['prob']:.3f}   {record['method']}", side)
    return overlay


def output_stems(paths: Sequence[Path], out: Path, method: str) -> list[str]:
    """Output names ``{stem}.{method}``: two inputs with the same stem (``a/x.png`` and
    ``b/x.dcm``) would overwrite each other, and no output may replace an input: both are
    errors."""
    if not method or "/" in method or "\\" in method or method.startswith("."):
        raise InputError(f"--method {method!r} cannot be part of a file name")
    seen: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen:
            raise InputError(
                f"{seen[path.stem]} and {path} would both be written as "
                f"{out / path.stem}.{method}.png/.json (rename one, or explain them in "
                "separate runs)"
            )
        seen[path.stem] = path
    inputs = {path.resolve() for path in paths}
    for stem in seen:
        for suffix in (".png", ".json"):
            if (out / f"{stem}.{method}{suffix}").resolve() in inputs:
                raise InputError(f"{out / stem}.{method}{suffix}: output would replace an input")
    return list(seen)


def explain_batch(
    model: torch.nn.Module,
    radiographs: Sequence[Radiograph],
    family: str,
    params: dict[str, Any],
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """Saliency maps (N, S, S) for the foreign-object class, and P(foreign object) (N,), from the
    one forward pass that made the maps."""
    x = to_model_input(torch.from_numpy(np.stack([r.pixels for r in radiographs])).to(device))
    targets = torch.full((len(radiographs),), FOREIGN_OBJECT, device=device)
    maps, logits = explain_with_logits(model, x, targets, family, **params)
    probs = torch.softmax(logits.float(), 1)[:, FOREIGN_OBJECT]
    return maps.cpu().numpy(), probs.cpu().numpy()


def run_explain(
    images: Sequence[str | os.PathLike],
    model_path: str | os.PathLike,
    method: str,
    out: str | os.PathLike,
    params: dict[str, Any] | None = None,
    batch_size: int = 8,
    device: str = "auto",
    overlay_side: int = OVERLAY_SIDE,
) -> list[dict[str, Any]]:
    """Explain every image with ``method`` for the foreign-object class; write an overlay PNG and
    a JSON record per image into ``out`` and return the records.

    All outputs are staged in a hidden folder and appear together only when every input
    succeeded; on an error nothing is left (a folder ``out`` created here is removed again).
    """
    paths, out = [Path(p) for p in images], Path(out)
    stems = output_stems(paths, out, method)
    family, resolved = resolve_method(method, params)
    dev = resolve_device(device)
    use_full_fp32(dev)
    model, meta = load_model(model_path, dev)
    resolved = FAMILIES[family].resolve_layers(method, model, resolved)  # aliases → modules
    size = int(meta["image_size"])
    provenance = {
        "method": method,
        "params": {"family": family, **resolved},
        "checkpoint_sha256": sha256_file(model_path),
        "input_size": size,
        "xiqa_version": __version__,
    }
    records = []
    with (
        staged_outputs(out) as stage,
        progress_bar(total=len(paths), desc=f"explaining ({method})", unit="img") as bar,
    ):
        for start in range(0, len(paths), batch_size):
            batch = [
                read_radiograph(p, size, overlay_side) for p in paths[start : start + batch_size]
            ]
            maps, probs = explain_batch(model, batch, family, resolved, dev)
            for radiograph, stem, saliency_map, prob in zip(
                batch, stems[start:], maps, probs, strict=False
            ):
                record = explanation_record(radiograph, saliency_map, prob, provenance)
                record["overlay"] = f"{stem}.{method}.png"
                overlay = render_overlay(radiograph.display, saliency_map, record)
                # PNG level 3: as small as the default 6 on radiographs, 3x faster.
                overlay.save(stage / record["overlay"], "PNG", compress_level=3)
                text = json.dumps(record, indent=2) + "\n"
                (stage / f"{stem}.{method}.json").write_text(text)
                records.append(record)
            bar.update(len(batch))
    return records
