"""The pointing game by hand-worked cases, the statistics by hand, and xiqa pointing/aggregate."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from xiqa.aggregate import pointing_latex, pointing_markdown, pointing_table
from xiqa.cache import load_cache
from xiqa.pointing import POINTING_COLUMNS, peak, pointing_hit
from xiqa.shards import images_digest, write_shard
from xiqa.stats import mcnemar_exact, wilson_interval

from conftest import assert_one_line_error, run_cli


def _map_with_peak(x, y, size=50):
    saliency = np.zeros((size, size), np.float32)
    saliency[y, x] = 1.0
    return saliency


def test_first_maximum_in_row_major_order_and_ties():
    saliency = np.zeros((5, 6))
    saliency[3, 1] = saliency[1, 4] = saliency[1, 5] = 2.0
    assert peak(saliency) == (4, 1, 3)  # row 1 comes before row 3; column 4 before 5
    assert peak(np.ones((4, 4))) == (0, 0, 16)


def test_distance_exactly_tau_is_a_miss_and_just_inside_a_hit():
    boxes = [[10, 10, 20, 20]]  # pixels x 10..19, y 10..19
    assert (
        pointing_hit(_map_with_peak(25, 15), boxes, 6) == (True, 25, 15, 6.0)
        or pointing_hit(_map_with_peak(25, 15), boxes, 6)[3] == 6.0
    )
    hit, x, y, distance = pointing_hit(_map_with_peak(25, 15), boxes, 6)
    assert (hit, x, y, distance) == (False, 25, 15, 6.0)  # from x = 19: 6 px, not < 6
    hit, *_, distance = pointing_hit(_map_with_peak(24, 15), boxes, 6)
    assert hit and distance == 5.0
    # Diagonal: peak (23, 23) to corner pixel (19, 19) is sqrt(32) = 5.66 < 6.
    hit, *_, distance = pointing_hit(_map_with_peak(23, 23), boxes, 6)
    assert hit and distance == pytest.approx(math.sqrt(32))
    hit, *_, distance = pointing_hit(_map_with_peak(15, 15), boxes, 6)
    assert hit and distance == 0.0  # inside the box


def test_right_and_bottom_edges_are_exclusive_and_fractions_truncate():
    # x0 = 2.7 -> first column 2; x1 = 5.9 -> last column 4 (5 is excluded).
    boxes = [[2.7, 2.7, 5.9, 5.9]]
    assert pointing_hit(_map_with_peak(5, 4), boxes, 1)[0] is False  # column 5 is not a pixel
    assert pointing_hit(_map_with_peak(5, 4), boxes, 1.01)[3] == 1.0
    assert pointing_hit(_map_with_peak(2, 2), boxes, 0.5)[0] is True


def test_box_truncating_to_zero_width_has_no_pixels():
    boxes = [[3.2, 1.0, 3.9, 9.0]]  # int(3.2) = int(3.9) = 3: no column
    hit, *_, distance = pointing_hit(_map_with_peak(3, 4), boxes, 25)
    assert not hit and distance == math.inf
    # Beside a real box the empty one is ignored.
    hit, *_, distance = pointing_hit(_map_with_peak(3, 4), boxes + [[8, 4, 9, 5]], 6)
    assert hit and distance == 5.0


def test_several_boxes_take_the_nearest():
    boxes = [[40, 40, 45, 45], [0, 0, 2, 2], [10, 0, 12, 3]]
    # Nearest: column 11 of the third box (pixels x 10..11), same row: 3 px.
    assert pointing_hit(_map_with_peak(14, 1), boxes, 3)[3] == 3.0
    assert pointing_hit(_map_with_peak(14, 1), boxes, 3)[0] is False  # exactly 3: a miss
    assert pointing_hit(_map_with_peak(14, 1), boxes, 3.5)[0] is True


def test_negative_image_has_nothing_to_point_at():
    hit, *_, distance = pointing_hit(_map_with_peak(5, 5), np.zeros((0, 4)), 25)
    assert not hit and distance == math.inf


def test_wilson_interval_by_hand():
    # p = 0.8, n = 10, z = 1.96: centre 0.7167, half-width 0.2266.
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and round(high, 4) == 0.2775
    for n in (1, 3, 7, 150, 151, 500):  # the ends are exact, never beside the accuracy
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0
    assert wilson_interval(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)


def test_mcnemar_exact_by_hand():
    # 1 vs 9 discordant pairs: 2 * P(X <= 1 | n=10, p=1/2) = 2 * 11 / 1024.
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact(9, 1) == pytest.approx(22 / 1024)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)


# --- xiqa pointing on hand-made shards ----------------------------------------------------------


def _shards(cache_path, folder, peaks_for, n_shards=2, method="m", **attr_overrides):
    """Shards whose maps peak where ``peaks_for(image_index)`` says."""
    cache = load_cache(cache_path)
    positives = np.flatnonzero(cache.label == 1)
    paths = []
    for shard, rows in enumerate(np.array_split(positives, n_shards)):
        attrs = {
            "method": method,
            "params": '{"family": "gradcam"}',
            "checkpoint_sha256": "0",
            "input_size": cache.size,
            "target_policy": "label",
            "shard": shard,
            "n_shards": n_shards,
            "images_digest": images_digest(cache),
            **attr_overrides,
        }
        path = folder / f"{method}-{shard}.h5"
        with write_shard(path, [cache.image_name[i] for i in rows], rows, attrs) as writer:
            maps = np.stack([_map_with_peak(*peaks_for(i), size=cache.size) for i in rows])
            writer.append(maps, np.ones(len(rows)), np.full(len(rows), 0.9))
        paths.append(path)
    return paths


def _centre_of_first_box(cache):
    def where(i):
        x0, y0, x1, y1 = cache.boxes_of(int(i))[0]
        return int((x0 + x1) / 2), int((y0 + y1) / 2)

    return where


def test_pointing_command_scores_every_map(tiny_caches, tmp_path):
    cache = load_cache(tiny_caches["val"])
    shards = _shards(tiny_caches["val"], tmp_path, _centre_of_first_box(cache))
    out = tmp_path / "p.csv"
    result = run_cli("pointing", "--images", tiny_caches["val"], "--tau", 3, "--out", out, *shards)
    assert result.exit_code == 0, result.output
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:6] == ["image_name", "peak_x", "peak_y", "n_ties", "distance", "hit"]
    positives = [cache.image_name[i] for i in np.flatnonzero(cache.label == 1)]
    assert [r["image_name"] for r in rows] == positives
    counted = [r for r in rows if r["counted"] == "1"]
    assert counted and all(r["hit"] == "1" and r["n_ties"] == "1" for r in counted)
    corner = _shards(tiny_caches["val"], tmp_path, lambda i: (0, 0), method="corner")
    run_cli("pointing", "--images", tiny_caches["val"], "--tau", 3, "--out", out, *corner)
    with open(out, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["counted"] == "1"]
    boxes = [cache.boxes_of(cache.image_name.index(r["image_name"])) for r in rows]
    expected = [int(pointing_hit(_map_with_peak(0, 0, cache.size), b, 3)[0]) for b in boxes]
    assert [int(r["hit"]) for r in rows] == expected


def test_pointing_refuses_mismatched_shards(tiny_caches, tmp_path):
    cache = load_cache(tiny_caches["val"])
    good = _shards(tiny_caches["val"], tmp_path, _centre_of_first_box(cache))
    other = _shards(tiny_caches["val"], tmp_path, lambda i: (0, 0), method="other")
    out = tmp_path / "p.csv"

    def pointing(*shards):
        return run_cli(
            "pointing", "--images", tiny_caches["val"], "--tau", 3, "--out", out, *shards
        )

    assert_one_line_error(pointing(good[0], other[1]), "method 'other' differs")
    assert_one_line_error(pointing(good[0]), "shards [1] of 'm' are missing")
    assert_one_line_error(pointing(good[0], good[0], good[1]), "shard 0 is also given")
    foreign = _shards(
        tiny_caches["val"],
        tmp_path,
        lambda i: (0, 0),
        method="foreign",
        images_digest="another cache",
    )
    assert_one_line_error(pointing(*foreign), "images_digest 'another cache'")
    result = run_cli("pointing", "--images", tiny_caches["test"], "--tau", 3, "--out", out, *good)
    assert_one_line_error(result, "images_digest")
    result = run_cli("pointing", "--images", tiny_caches["val"], "--tau", 0, "--out", out, *good)
    assert_one_line_error(result, "--tau 0")
    assert not out.exists()


# --- the table -------------------------------------------------------------------------------


def _pointing_csv(path, hits):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(POINTING_COLUMNS)
        for k, hit in enumerate(hits):
            writer.writerow([f"{k}.jpg", 0, 0, 2 if k == 0 else 1, 1.0, hit, 1, 0.9, 1, 1])


def test_pointing_table_statistics(tmp_path):
    # 10 images; NormGrad hits 8 (images 0-7), Grad-CAM hits 3 (images 0, 8, 9):
    # discordant pairs: only NormGrad images 1-7 (7), only Grad-CAM images 8 and 9 (2).
    normgrad = [1] * 8 + [0, 0]
    grad_cam = [1, 0, 0, 0, 0, 0, 0, 0, 1, 1]
    for split in ("val", "test"):
        _pointing_csv(tmp_path / "pointing" / "normgrad-conv1x1-single" / f"{split}.csv", normgrad)
        _pointing_csv(tmp_path / "pointing" / "gradcam" / f"{split}.csv", grad_cam)
    methods = {
        "normgrad-conv1x1-single": {
            "family": "normgrad",
            "virtual_layer": "conv1x1",
            "layers": ["layer4.2"],
        },
        "gradcam": {"family": "gradcam", "layer": "layer4.2"},
    }
    rows = pointing_table(tmp_path, methods, ["val", "test"], paper=True)
    ng, gc = rows
    assert (ng["method"], ng["layer_type"], ng["heatmap"]) == ("NormGrad", "conv1x1", "single")
    assert ng["val_accuracy"] == 0.8 and ng["val_n"] == 10 and ng["val_p_vs_best"] == ""
    assert (round(ng["val_ci_low"], 4), round(ng["val_ci_high"], 4)) == (0.4902, 0.9433)
    assert gc["val_accuracy"] == 0.3
    assert gc["val_p_vs_best"] == pytest.approx(mcnemar_exact(2, 7))
    assert ng["val_tied_peaks"] == 0.1
    assert ng["val_paper"] == 0.876 and gc["test_paper"] == 0.656
    markdown = pointing_markdown(rows, ["val", "test"], 25)
    assert "| NormGrad | conv1x1 | single | 0.800 [0.490, 0.943] | best | 10% |" in markdown
    assert "paper val" in markdown
    latex = pointing_latex(rows, ["val", "test"], 25)
    assert r"\begin{tabular}{lllrrrr}" in latex and latex.count(r"\\") == 3  # header and two rows
    assert latex.count("{") == latex.count("}")
    not_paper = pointing_table(tmp_path, methods, ["val", "test"], paper=False)
    assert not_paper[0]["val_paper"] == ""
