"""Hit-in-shape and segmentation IoU: hand-worked masks, Otsu's threshold against scikit-image,
xiqa localisation on hand-made shards, and the tables (tuned fraction, paired tests, sizes)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from xiqa.data.annotation import parse_annotation
from xiqa.data.cache import load_cache
from xiqa.data.geometry import shape_masks
from xiqa.evaluation.localisation import (
    DEFAULT_FRACTIONS,
    fraction_columns,
    image_row,
    iou,
    localisation_table,
    otsu_mask,
    otsu_threshold,
    read_localisation,
    relative,
    size_class,
    size_table,
)

from conftest import assert_one_line_error, run_cli, write_map_shards


def test_iou_of_known_masks():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :3] = True  # 3 pixels
    b[0, 1:] = True  # 3 pixels, 2 shared: IoU 2 / 4
    assert iou(a, b) == 0.5
    assert iou(a, a) == 1.0
    assert iou(a, ~a) == 0.0
    assert math.isnan(iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)))


@pytest.mark.parametrize("seed", range(8))
def test_otsu_threshold_agrees_with_scikit_image(seed):
    filters = pytest.importorskip("skimage.filters")
    rng = np.random.default_rng(seed)
    kind = seed % 4
    if kind == 0:  # bimodal
        values = np.r_[rng.normal(0.2, 0.05, 300), rng.normal(0.8, 0.05, 100)]
    elif kind == 1:  # skewed, a saliency-like map
        values = rng.exponential(1.0, 1024) ** 2
    elif kind == 2:  # few distinct levels
        values = rng.integers(0, 5, 500).astype(float)
    else:  # a map with a plateau at its maximum (the p99 clip)
        values = np.minimum(rng.random(4096), 0.99)
    v = relative(values.reshape(-1, 1 if kind != 3 else 64))
    assert otsu_threshold(v) == pytest.approx(float(filters.threshold_otsu(v)), abs=1e-12)
    assert (otsu_mask(v)[0] == (v > filters.threshold_otsu(v))).all()


def test_constant_map_highlights_everything():
    v = relative(np.full((5, 5), 3.0))
    assert (v == 1).all()
    mask, _ = otsu_mask(v)
    assert mask.all()


def test_image_row_by_hand():
    # A 10x10 map whose top 4 pixels (value 1) sit on a 2x2 rectangle shape; the rest is 0.
    shapes = shape_masks(parse_annotation("0 2 2 4 4"), 10, 10, 10)
    assert shapes[0].sum() == 4  # centres 2.5 and 3.5 in both axes
    saliency = np.zeros((10, 10))
    saliency[2:4, 2:4] = 1.0
    saliency[9, 9] = 0.5
    boxes = np.array([[2.0, 2.0, 6.0, 6.0]])  # box pixels 2..5: 16
    row = image_row(saliency, shapes, boxes, (0.25, 0.5, 0.75))
    assert row["hit_shape"] == 1 and (row["peak_x"], row["peak_y"]) == (2, 2)
    # Otsu on 95 zeros, one 0.5 and four 1s: splitting below 0.5 gives between-class variance
    # 95 * 5 * (0.9 - 0)^2 = 384.75 (counts, unnormalised), splitting above it
    # 96 * 4 * (1 - 0.5/96)^2 = 380.0; so the 0.5 pixel joins the mask: IoU 4/5 with the shape,
    # 4/17 with the 16 box pixels.
    assert row["iou_otsu_shapes"] == 4 / 5
    assert row["iou_otsu_boxes"] == 4 / 17
    assert row[fraction_columns(0.25)[0]] == 4 / 5  # v >= 0.25 also takes the 0.5 pixel
    assert row[fraction_columns(0.75)[0]] == 1.0  # v >= 0.75: the four 1s
    assert row[fraction_columns(0.75)[1]] == 4 / 16
    assert row["shape_share"] == 0.04
    # The tie rule: an equal maximum earlier in row-major order, off the shape, is the peak.
    saliency[0, 5] = 1.0
    row = image_row(saliency, shapes, boxes, (0.5,))
    assert row["hit_shape"] == 0 and (row["peak_x"], row["peak_y"]) == (5, 0)


def test_size_classes_by_their_bounds():
    assert [size_class(s, (0.01, 0.05)) for s in (0.0099, 0.01, 0.05, 0.0501)] == [
        "small",
        "medium",
        "medium",
        "large",
    ]


# --- xiqa localisation on hand-made shards -----------------------------------------------------


def _shape_map(cache, index):
    """A map equal to 1 on the image's true shapes and 0 elsewhere (a constant for negatives)."""
    masks = shape_masks(
        cache.shapes_of(index), int(cache.width[index]), int(cache.height[index]), cache.size
    )
    return masks.any(axis=0).astype(float) if len(masks) else np.zeros((cache.size,) * 2)


def test_localisation_command_scores_a_perfect_map(tiny_caches, tmp_path):
    cache = load_cache(tiny_caches["val"])
    shards = write_map_shards(tiny_caches["val"], tmp_path, _shape_map)
    out = tmp_path / "loc.csv"
    result = run_cli("localisation", "--images", tiny_caches["val"], "--out", out, *shards)
    assert result.exit_code == 0, result.output
    frame = read_localisation(out)
    positives = [cache.image_name[i] for i in np.flatnonzero(cache.label == 1)]
    assert frame.index.tolist() == positives
    counted = frame[frame["counted_shapes"] == 1]
    assert len(counted) > 0
    assert (counted["hit_shape"] == 1).all()
    assert (counted["iou_otsu_shapes"] == 1).all()
    assert (counted[fraction_columns(0.5)[0]] == 1).all()
    assert len([c for c in frame.columns if c.startswith("iou_shapes_f")]) == len(DEFAULT_FRACTIONS)


def test_localisation_refuses_a_missing_shard_and_writes_nothing(tiny_caches, tmp_path):
    shards = write_map_shards(tiny_caches["val"], tmp_path, _shape_map, n_shards=2)
    out = tmp_path / "loc.csv"
    result = run_cli("localisation", "--images", tiny_caches["val"], "--out", out, shards[0])
    assert_one_line_error(result, "shards [1]", "missing")
    assert not out.exists()
    result = run_cli(
        "localisation",
        "--images",
        tiny_caches["val"],
        "--out",
        out,
        "--fractions",
        "0.5,1.5",
        *shards,
    )
    assert_one_line_error(result, "--fractions", "1.5")


# --- tables --------------------------------------------------------------------------------------


def _frame(names, hits, ious, grid, share=0.001):
    """A localisation frame: per image a hit, an Otsu IoU and an IoU per fraction of ``grid``,
    the shapes' area share ``share``."""
    rows = []
    for name, hit, value in zip(names, hits, ious, strict=True):
        row = {
            "image_name": name,
            "shape_share": share,
            "label": 1,
            "counted_shapes": 1,
            "counted_boxes": 1,
            "hit_shape": hit,
            "iou_otsu_shapes": value,
            "iou_otsu_boxes": value / 2,
            "otsu_share": 0.1,
        }
        for fraction, iou_at in grid.items():
            row[fraction_columns(fraction)[0]] = iou_at
            row[fraction_columns(fraction)[1]] = iou_at / 2
        rows.append(row)
    return pd.DataFrame(rows).set_index("image_name")


def test_localisation_table_by_hand():
    names = [f"{k}.png" for k in range(10)]
    methods = {"a": {"family": "gradcam"}, "b": {"family": "gradcam"}}
    frames = {
        ("a", "val"): _frame(names, [1] * 8 + [0] * 2, [0.5] * 10, {0.25: 0.2, 0.5: 0.4}),
        ("b", "val"): _frame(names, [1] * 2 + [0] * 8, [0.1] * 10, {0.25: 0.3, 0.5: 0.3}),
        ("a", "test"): _frame(names, [1] * 6 + [0] * 4, [0.4] * 10, {0.25: 0.1, 0.5: 0.35}),
        ("b", "test"): _frame(names, [0] * 10, [0.2] * 10, {0.25: 0.25, 0.5: 0.15}),
    }
    rows = localisation_table(frames, methods, ["val", "test"], 0.25)
    a, b = rows
    assert a["val_hit_shape"] == 0.8 and a["val_hit_p_vs_best"] == ""
    # b against a on val: 6 images only a hit, none only b: exact McNemar 2 * 0.5^6.
    assert b["val_hit_p_vs_best"] == pytest.approx(2 * 0.5**6)
    assert a["val_miou_otsu"] == 0.5 and b["val_miou_otsu"] == pytest.approx(0.1)
    assert a["val_miou_otsu_boxes"] == 0.25
    # Tuned on val: a's best fraction is 0.5 (0.4 > 0.2), b's is 0.25 (tied at 0.3: the smaller).
    assert a["test_tuned_fraction"] == 0.5 and a["test_miou_tuned"] == pytest.approx(0.35)
    assert b["test_tuned_fraction"] == 0.25 and b["test_miou_tuned"] == pytest.approx(0.25)
    assert a["test_miou_fraction"] == pytest.approx(0.1)  # the fixed fraction 0.25
    # Wilcoxon signed-rank of b's IoUs against a's: all ten differences -0.4, p = 2 / 2^10.
    assert b["val_miou_p_vs_best"] == pytest.approx(2 / 2**10)


def test_size_table_joins_the_pointing_hits():
    frame = pd.concat(
        [
            _frame(["a"], [1], [0.5], {0.5: 0.5}, 0.001),  # small below 0.002
            _frame(["b", "c"], [0, 1], [0.1, 0.3], {0.5: 0.2}, 0.007),  # large above 0.006
        ]
    )
    pointing = {("m", "test"): {"a": 0, "b": 1, "c": 1}}
    rows = size_table({("m", "test"): frame}, pointing, {"m": {}}, ["test"])
    by_size = {r["size"]: r for r in rows}
    assert by_size["small"]["n"] == 1 and by_size["small"]["pointing"] == 0
    assert by_size["large"]["pointing"] == 1.0 and by_size["large"]["hit_shape"] == 0.5
    assert by_size["large"]["miou_otsu"] == pytest.approx(0.2)
    assert by_size["medium"]["n"] == 0 and math.isnan(by_size["medium"]["pointing"])
