"""A synthetic Object-CXR: chest-radiograph-like images with foreign objects, in the real format.

Each image is drawn from its own random stream (seed, split, index), so a dataset is the same
byte for byte on every run and any image can be made alone. Sizes are the real ones scaled by 1/8
(with jitter): non-square, about 320×384. Anatomy: body outline, two lung fields narrowing to the
apex and cut by diaphragm domes, heart shadow, spine with vertebrae, clavicles, posterior ribs,
vessel markings, exposure and noise variation. Objects: buttons with holes, coins, paper clips
and bobby pins, wires and bead chains, ECG electrodes, necklaces, rings. As in Object-CXR, only
objects inside the lung fields are annotated (rectangle, ellipse or polygon by shape); a few
objects outside the lungs (neck, abdomen, shoulders) are drawn but not annotated.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from xiqa.data.annotation import Shape, format_annotation
from xiqa.errors import InputError
from xiqa.io import atomic_output, progress_bar, worker_pool, write_csv

REAL_SIZES = ((2560, 3072), (2936, 2949), (2235, 2923))  # Object-CXR's (W, H)
SIZE_SCALE = 1 / 8
SUPERSAMPLE = 4  # objects are drawn at 4× and box-filtered down: anti-aliased edges
_SPLIT_CODES = {"train": 0, "dev": 1, "test": 2}


@dataclass
class Anatomy:
    """Per-image geometry in normalised coordinates (u = x / W, v = y / H)."""

    spine: float  # u of the spine's midline
    apex: float  # v of the lung apices
    lungs: np.ndarray  # (H, W) soft lung-field mask in [0, 1], heart excluded


@dataclass
class Placed:
    """An object rendered into an alpha patch at (x0, y0), pulling pixels towards ``level``."""

    alpha: np.ndarray
    x0: int
    y0: int
    level: float
    kind: str  # the annotation shape kind
    outline: list[tuple[float, float]] | None = None  # polygon, image coordinates

    def shape(self, width: int, height: int) -> Shape:
        """The annotation: the polygon outline, or the bounding box of the visible object."""
        if self.kind == "polygon":
            points = tuple(
                (int(np.clip(round(x), 0, width)), int(np.clip(round(y), 0, height)))
                for x, y in self.outline
            )
            return Shape("polygon", points)
        ys, xs = np.nonzero(self.alpha > 0.3)
        return Shape(
            self.kind,
            (
                (self.x0 + int(xs.min()), self.y0 + int(ys.min())),
                (self.x0 + int(xs.max()) + 1, self.y0 + int(ys.max()) + 1),
            ),
        )


def _ramp(x: np.ndarray | float, edge: float) -> np.ndarray:
    """0 below 0, 1 above ``edge``, linear between: a cheap soft edge."""
    return np.clip(np.asarray(x) / edge, 0.0, 1.0)


def _smooth_noise(
    rng: np.random.Generator,
    width: int,
    height: int,
    cell: int,
    resample: Image.Resampling = Image.Resampling.BICUBIC,
) -> np.ndarray:
    """Zero-mean, unit-variance-ish noise with features about ``cell`` pixels across."""
    coarse = rng.standard_normal((height // cell + 2, width // cell + 2), np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((width, height), resample))


def _anatomy(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, Anatomy]:
    """The background radiograph (float, bright = dense) and its geometry."""
    u = ((np.arange(width, dtype=np.float32) + 0.5) / width)[None, :]
    v = ((np.arange(height, dtype=np.float32) + 0.5) / height)[:, None]
    spine = 0.5 + rng.normal(0, 0.015)
    apex = rng.uniform(0.10, 0.17)
    base = (rng.uniform(0.60, 0.70), rng.uniform(0.63, 0.74))
    lung_width = (rng.uniform(0.30, 0.36), rng.uniform(0.28, 0.34))
    lateral = np.abs(u - spine)

    body = _ramp(0.47 + 0.04 * v - lateral, 0.03)
    lungs = np.zeros((height, width), np.float32)
    middle = int(np.clip(round(spine * width), 1, width - 1))
    for side, (dome, lung_w) in enumerate(zip(base, lung_width, strict=True)):
        cols = slice(0, middle) if side == 0 else slice(middle, width)
        lat = lateral[:, cols]
        t = np.clip((v - apex) / (dome - apex), 0.0, 1.0)
        inner = 0.045 + 0.025 * t
        outer = inner + lung_w * (0.3 + 0.7 * np.sqrt(t))
        across = np.clip((lat - inner) / (outer - inner), 0, 1)  # 0 mediastinum, 1 ribs
        floor = dome - 0.03 + 0.07 * across * across  # deep costophrenic angles
        lungs[:, cols] = (
            _ramp(v - apex, 0.02)
            * _ramp(floor - v, 0.015)
            * _ramp(lat - inner, 0.015)
            * _ramp(outer - lat, 0.02)
        )
    heart_c = (spine + rng.uniform(0.05, 0.09), max(base) - rng.uniform(0.08, 0.12))
    heart_r = (rng.uniform(0.15, 0.2), rng.uniform(0.12, 0.16))
    heart = _ramp(
        1 - ((u - heart_c[0]) / heart_r[0]) ** 2 - ((v - heart_c[1]) / heart_r[1]) ** 2, 0.6
    )
    lungs *= 1 - 0.85 * heart

    thorax = _ramp(0.42 - lateral, 0.03) * _ramp(max(base) + 0.05 - v, 0.03)
    spacing = (max(base) - apex + 0.06) / 10
    d = lateral / 0.25
    bend = rng.uniform(0.08, 0.12) * d * d - 0.02 * d  # posterior ribs fall away laterally
    phase = (v - apex + 0.04 - bend) / spacing  # rib k is centred where phase == k
    nearest = np.clip(np.rint(phase), 0, 9)
    ribs = _ramp(1 - np.abs(phase - nearest) / 0.28, 0.6)
    ribs *= thorax * _ramp(lateral - 0.03, 0.02)
    clavicle = _ramp(1 - np.abs(v - (apex + 0.02 - 0.22 * (lateral - 0.05))) / 0.014, 0.5)
    clavicle *= _ramp(lateral - 0.04, 0.02) * _ramp(0.32 - lateral, 0.04)
    vertebrae = 0.75 + 0.25 * np.cos(2 * np.pi * (v - rng.uniform(0, 1)) / rng.uniform(0.04, 0.05))
    spine_band = _ramp(0.035 - lateral, 0.012) * vertebrae

    tissue = 0.52 + 0.025 * _smooth_noise(rng, width, height, 32, Image.Resampling.BILINEAR)
    vessels = _smooth_noise(rng, width, height, 6) * _ramp(0.5 - np.abs(u - spine) + 0.0, 0.3)
    image = body * tissue
    image = image - rng.uniform(0.28, 0.38) * lungs
    image = image + 0.05 * lungs * vessels
    image = image + 0.09 * heart * body + 0.14 * spine_band + 0.1 * clavicle
    image = image + rng.uniform(0.05, 0.09) * ribs * (0.4 + 0.6 * lungs)
    return image, Anatomy(spine, apex, lungs)


# --- foreign objects -------------------------------------------------------------------------


def _canvas(width: float, height: float) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("L", (math.ceil(width) * SUPERSAMPLE, math.ceil(height) * SUPERSAMPLE))
    return image, ImageDraw.Draw(image)


def _finish(image: Image.Image, angle: float = 0.0) -> np.ndarray:
    """Rotate (degrees) and box-filter the supersampled drawing down to an alpha patch."""
    if angle:
        image = image.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
    size = (max(1, image.width // SUPERSAMPLE), max(1, image.height // SUPERSAMPLE))
    return np.asarray(image.resize(size, Image.Resampling.BOX), dtype=np.float32) / 255.0


def _disc(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, **kw) -> None:
    s = SUPERSAMPLE
    draw.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], **kw)


def _button(rng, scale):
    r = scale * rng.uniform(0.014, 0.026)
    image, draw = _canvas(2 * r + 3, 2 * r + 3)
    c = r + 1.5
    _disc(
        draw,
        c,
        c,
        r,
        fill=int(rng.uniform(150, 230)),
        outline=255,
        width=max(1, int(0.15 * r * SUPERSAMPLE)),
    )
    holes = int(rng.choice([2, 4]))
    for k in range(holes):
        a = 2 * np.pi * k / holes + rng.uniform(0, np.pi)
        _disc(draw, c + 0.35 * r * np.cos(a), c + 0.35 * r * np.sin(a), 0.13 * r, fill=40)
    kind = "rectangle" if rng.random() < 0.3 else "ellipse"
    return _finish(image), rng.uniform(0.8, 0.95), kind


def _coin(rng, scale):
    r = scale * rng.uniform(0.025, 0.037)
    image, draw = _canvas(2 * r + 3, 2 * r + 3)
    _disc(
        draw, r + 1.5, r + 1.5, r, fill=235, outline=255, width=max(1, int(0.1 * r * SUPERSAMPLE))
    )
    return _finish(image), rng.uniform(0.95, 1.0), "ellipse"


def _ring(rng, scale):
    r = scale * rng.uniform(0.016, 0.026)
    image, draw = _canvas(2 * r + 3, 2 * r + 3)
    _disc(draw, r + 1.5, r + 1.5, r, outline=255, width=max(2, int(0.28 * r * SUPERSAMPLE)))
    return _finish(image), rng.uniform(0.95, 1.0), "ellipse"


def _electrode(rng, scale):
    pad = scale * rng.uniform(0.04, 0.05)
    image, draw = _canvas(2 * pad + 3, 2 * pad + 3)
    c = pad + 1.5
    _disc(draw, c, c, pad, fill=45)  # the foam pad is barely radio-opaque
    _disc(draw, c, c, 0.45 * pad, outline=200, width=max(1, int(0.08 * pad * SUPERSAMPLE)))
    _disc(draw, c, c, 0.22 * pad, fill=255)  # metal snap
    return _finish(image), 1.0, "ellipse"


def _clip(rng, scale):
    length = scale * rng.uniform(0.07, 0.12)
    wide = length * rng.uniform(0.22, 0.3)
    wire = max(2, int(scale * 0.006 * SUPERSAMPLE))
    image, draw = _canvas(length + 3, wide + 3)
    s = SUPERSAMPLE
    if rng.random() < 0.6:  # paper clip: two nested loops
        draw.rounded_rectangle(
            [1.5 * s, 1.5 * s, (length + 1.5) * s, (wide + 1.5) * s],
            radius=wide * s / 2,
            outline=255,
            width=wire,
        )
        inset = wide * 0.3
        draw.rounded_rectangle(
            [
                (1.5 + inset) * s,
                (1.5 + inset) * s,
                (length - 2 * inset) * s,
                (wide + 1.5 - inset) * s,
            ],
            radius=(wide / 2 - inset) * s,
            outline=255,
            width=wire,
        )
    else:  # bobby pin: two prongs joined by a bend
        mid = (1.5 + wide / 2) * s
        draw.line(
            [(1.5 * s, mid - wide * 0.25 * s), ((length + 1.5) * s, 1.5 * s)], fill=255, width=wire
        )
        draw.line(
            [(1.5 * s, mid + wide * 0.25 * s), ((length + 1.5) * s, (wide + 1.5) * s)],
            fill=255,
            width=wire,
        )
        draw.arc(
            [0, mid - wide * 0.25 * s, 3 * s, mid + wide * 0.25 * s], 90, 270, fill=255, width=wire
        )
    return _finish(image, rng.uniform(0, 180)), 1.0, "rectangle"


def _path_points(rng, scale, start, necklace: bool) -> np.ndarray:
    """(n, 2) points of a smooth wire or chain path in image pixels, starting near ``start``."""
    t = np.linspace(0, 1, 40)[:, None]
    if necklace:  # a hanging arc around the neck, centred on ``start``
        half = scale * rng.uniform(0.12, 0.18)
        drop = scale * rng.uniform(0.15, 0.3)
        theta = np.pi * t
        return np.hstack([start[0] - half * np.cos(theta), start[1] + drop * np.sin(theta)])
    length = scale * rng.uniform(0.18, 0.4)
    a = rng.uniform(0, 2 * np.pi)
    p0 = np.asarray(start, float)
    p3 = p0 + length * np.array([np.cos(a), np.sin(a)])
    p1 = p0 + rng.normal(0, length / 3, 2)
    p2 = p3 + rng.normal(0, length / 3, 2)
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def _path_object(rng, scale, points: np.ndarray, chain: bool):
    """Render a wire (a line) or a chain (beads) along ``points``; outline a band around it."""
    thick = scale * (rng.uniform(0.008, 0.012) if chain else rng.uniform(0.004, 0.007))
    margin = thick + 3
    x0, y0 = np.floor(points.min(0) - margin).astype(int)
    x1, y1 = np.ceil(points.max(0) + margin).astype(int)
    image, draw = _canvas(x1 - x0, y1 - y0)
    local = (points - [x0, y0]) * SUPERSAMPLE
    if chain:
        steps = np.cumsum(np.r_[0, np.hypot(*np.diff(points, axis=0).T)])
        for d in np.arange(0, steps[-1], 1.6 * thick):
            cx, cy = np.interp(d, steps, local[:, 0]), np.interp(d, steps, local[:, 1])
            r = thick * SUPERSAMPLE / 2
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=255, width=max(1, int(r / 2.5)))
    else:
        draw.line(
            [tuple(p) for p in local],
            fill=255,
            width=max(2, int(thick * SUPERSAMPLE)),
            joint="curve",
        )
    tangent = np.gradient(points, axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
    band = thick / 2 + 2
    keep = slice(None, None, 4)
    outline = np.vstack([(points + band * normal)[keep], (points - band * normal)[keep][::-1]])
    return _finish(image), (x0, y0), [tuple(p) for p in outline]


OBJECT_KINDS = {  # name: (weight among annotated objects, weight outside the lungs)
    "button": (0.28, 0.15),
    "coin": (0.08, 0.05),
    "clip": (0.14, 0.1),
    "wire": (0.12, 0.3),
    "chain": (0.08, 0.1),
    "electrode": (0.16, 0.3),
    "necklace": (0.07, 0.0),
    "ring": (0.07, 0.0),
}
_COMPACT = {"button": _button, "coin": _coin, "clip": _clip, "electrode": _electrode, "ring": _ring}


def _place(
    rng, anatomy: Anatomy, width: int, height: int, kind: str, inside: bool
) -> Placed | None:
    """One object of ``kind`` at a random spot inside (or wholly outside) the lung fields."""
    scale = width
    lungs = anatomy.lungs
    if kind == "necklace":
        start = (anatomy.spine * width, (anatomy.apex - rng.uniform(0.0, 0.04)) * height)
    else:
        for _ in range(50):
            x, y = rng.uniform(0.03, 0.97) * width, rng.uniform(0.03, 0.97) * height
            if (lungs[int(y), int(x)] > 0.6) == inside:
                break
        else:
            return None
        start = (x, y)
    if kind in _COMPACT:
        alpha, level, shape_kind = _COMPACT[kind](rng, scale)
        x0, y0 = int(start[0] - alpha.shape[1] / 2), int(start[1] - alpha.shape[0] / 2)
        outline = None
    else:
        points = _path_points(rng, scale, start, necklace=kind == "necklace")
        alpha, (x0, y0), outline = _path_object(rng, scale, points, chain=kind != "wire")
        level, shape_kind = rng.uniform(0.85, 1.0), "polygon"
    h, w = alpha.shape
    if x0 < 0 or y0 < 0 or x0 + w > width or y0 + h > height:
        return None
    footprint = lungs[y0 : y0 + h, x0 : x0 + w][alpha > 0.1]
    if not inside and footprint.size and footprint.max() > 0.05:
        return None  # an unannotated object must stay clear of the lung fields
    if inside and outline is not None and np.mean(footprint > 0.5) < 0.25:
        return None  # a long object counts as in the lungs only if much of it lies there
    return Placed(alpha, x0, y0, level, shape_kind, outline)


def _draw_objects(rng, anatomy, width, height, names, inside) -> list[Placed]:
    placed = []
    for name in names:
        for _ in range(20):
            obj = _place(rng, anatomy, width, height, name, inside)
            if obj is not None:
                placed.append(obj)
                break
    return placed


def synth_image(seed: int, split: str, index: int) -> tuple[bytes, list[Shape]]:
    """One synthetic radiograph as JPEG bytes, and its annotated shapes (empty: negative)."""
    rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
    base_w, base_h = REAL_SIZES[rng.integers(len(REAL_SIZES))]
    scale = SIZE_SCALE * rng.uniform(0.94, 1.06)
    width = int(round(base_w * scale))
    height = int(round(base_h * scale * rng.uniform(0.98, 1.02)))
    height += height == width  # never square, like the real radiographs
    image, anatomy = _anatomy(rng, width, height)

    names = list(OBJECT_KINDS)
    inside_p = np.array([w for w, _ in OBJECT_KINDS.values()])
    outside_p = np.array([w for _, w in OBJECT_KINDS.values()])
    annotated = []
    if rng.random() < 0.5:
        count = int(rng.choice([1, 2, 3, 4], p=[0.55, 0.27, 0.12, 0.06]))
        kinds = rng.choice(names, size=count, p=inside_p / inside_p.sum())
        annotated = _draw_objects(rng, anatomy, width, height, kinds, inside=True)
    unannotated = []
    if rng.random() < 0.15:
        kinds = rng.choice(names, size=1, p=outside_p / outside_p.sum())
        unannotated = _draw_objects(rng, anatomy, width, height, kinds, inside=False)
    for obj in annotated + unannotated:
        h, w = obj.alpha.shape
        region = image[obj.y0 : obj.y0 + h, obj.x0 : obj.x0 + w]
        region += obj.alpha * (obj.level - region)

    # Exposure: contrast, brightness and gamma vary between machines and patients.
    image = np.clip(image * rng.uniform(0.85, 1.1) + rng.uniform(-0.04, 0.06), 0, 1)
    image = image.astype(np.float32) ** np.float32(rng.uniform(0.75, 1.3))
    # Quantum noise, correlated over about two pixels as a detector's is.
    noise = _smooth_noise(rng, width, height, 2, Image.Resampling.BILINEAR)
    image += np.float32(rng.uniform(0.01, 0.03)) * noise
    pixels = Image.fromarray(np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8), mode="L")
    buffer = io.BytesIO()
    pixels.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue(), [obj.shape(width, height) for obj in annotated]


def _synth_job(job: tuple[int, str, int]) -> tuple[bytes, list[Shape]]:
    return synth_image(*job)


def write_synthetic(
    out: str | os.PathLike,
    n_train: int,
    n_dev: int,
    n_test: int,
    seed: int = 0,
    num_workers: int = 1,
) -> None:
    """Write a synthetic Object-CXR dataset to ``out`` (atomically: all of it or nothing).

    Names continue across splits like the real ones: train 00001.., then dev, then test.
    """
    counts = {"train": n_train, "dev": n_dev, "test": n_test}
    for split, n in counts.items():
        if n < 1:
            raise InputError(f"--n-{split} {n}: each split needs at least one image")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: already exists; remove it or choose another output folder")
    jobs = [(seed, split, i) for split, n in counts.items() for i in range(n)]
    with (
        atomic_output(out, directory=True) as tmp,
        progress_bar(total=len(jobs), desc="synthesising", unit="img") as bar,
        worker_pool(num_workers) as pool,
    ):
        made = pool.imap(_synth_job, jobs, chunksize=8) if pool else map(_synth_job, jobs)
        number = 0
        for split, n in counts.items():
            (tmp / split).mkdir()
            rows = []
            for _ in range(n):
                number += 1
                jpeg, shapes = next(made)
                name = f"{number:05d}.jpg"
                (tmp / split / name).write_bytes(jpeg)
                rows.append((name, format_annotation(shapes)))
                bar.update()
            write_csv(
                pd.DataFrame(rows, columns=["image_name", "annotation"]), tmp / f"{split}.csv"
            )
