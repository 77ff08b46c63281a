"""The pointing game and the energy-based pointing game by hand-worked cases, the statistics by
hand, the pointing curve against the table, and xiqa pointing/aggregate."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from xiqa.data.cache import load_cache
from xiqa.errors import InputError
from xiqa.evaluation.pointing import (
    POINTING_COLUMNS,
    box_distances,
    box_mask,
    energy_share,
    peak,
    pointing_hit,
)
from xiqa.evaluation.stats import bootstrap_mean_ci, mcnemar_exact
from xiqa.evaluation.tables import (
    MethodResult,
    curve_taus,
    energy_markdown,
    energy_table,
    pointing_curve,
    pointing_latex,
    pointing_markdown,
    pointing_table,
    read_pointing,
    read_scores,
)

from conftest import assert_one_line_error, run_cli, write_map_shards


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


# --- the energy-based pointing game ----------------------------------------------------------

ENERGY_MAP = np.array(
    [
        [0, 1, 2, 0, 0],
        [0, 3, 4, 1, 0],
        [0, 0, 5, -2, 0],
        [1, 0, 0, 0, 6],
    ],
    dtype=np.float32,
)  # positive mass 23 (the -2 counts as 0)


def test_energy_share_by_hand():
    a = [1, 0, 3, 2]  # columns 1-2, rows 0-1: 1 + 2 + 3 + 4 = 10
    assert energy_share(ENERGY_MAP, [a]) == pytest.approx(10 / 23)
    # Columns int(2.9) = 2 to 3 (4.2 -> 4 excluded), rows 1-2: 4 + 1 + 5 + 0 (the -2).
    b = [2.9, 1.5, 4.2, 3.0]
    assert energy_share(ENERGY_MAP, [b]) == pytest.approx(10 / 23)
    # The union counts the shared pixel (2, 1) = 4 once: 10 + 1 + 5 = 16, not 20.
    assert energy_share(ENERGY_MAP, [a, b]) == pytest.approx(16 / 23)
    # Partly outside the map: columns 4-6 and rows 3-8 leave only pixel (4, 3) = 6.
    c = [4.5, 3.9, 7.0, 9.0]
    assert energy_share(ENERGY_MAP, [a, b, c]) == pytest.approx(22 / 23)
    # A box truncating to zero width adds nothing; the whole map holds all the mass.
    assert energy_share(ENERGY_MAP, [a, [0.2, 0, 0.9, 4]]) == pytest.approx(10 / 23)
    assert energy_share(ENERGY_MAP, [[0, 0, 5, 4]]) == 1.0
    # At the border: x1 = 5 = W and y1 = 4 = H include the last column and row.
    assert energy_share(ENERGY_MAP, [[4, 3, 5, 4]]) == pytest.approx(6 / 23)
    # A uniform map scores the boxes' area share; no positive mass: no share.
    assert energy_share(np.ones((4, 5)), [a]) == pytest.approx(4 / 20)
    assert math.isnan(energy_share(-np.ones((4, 5)), [a]))
    assert math.isnan(energy_share(np.zeros((4, 5)), [a]))
    assert energy_share(ENERGY_MAP, np.zeros((0, 4))) == 0.0


def test_box_mask_holds_the_pixels_at_distance_zero():
    rng = np.random.default_rng(0)
    height, width = 20, 30
    for _ in range(20):
        corners = rng.uniform(-8, 38, (3, 2, 2))  # some boxes partly or wholly outside
        boxes = np.concatenate([corners.min(1), corners.max(1)], axis=1)
        boxes = np.vstack([boxes, [4.2, 5.0, 4.9, 9.0]])  # no columns: no pixels
        mask = box_mask(boxes, (height, width))
        at_zero = np.array(
            [[box_distances(x, y, boxes).min() == 0 for x in range(width)] for y in range(height)]
        )
        assert np.array_equal(mask, at_zero)


def test_energy_table_by_hand():
    scores = {
        ("gradcam", "test"): MethodResult(
            hits={"a": 1, "b": 0, "c": 0},
            energy={"a": 0.2, "b": 0.4, "c": math.nan},
            box_share={"a": 0.01, "b": 0.02, "c": 0.06},
        )
    }
    (row,) = energy_table(scores, {"gradcam": {"family": "gradcam"}}, ["test"])
    assert row["test_energy"] == pytest.approx(0.3) and row["test_n"] == 2
    assert row["test_no_mass"] == 1 and row["test_box_share"] == pytest.approx(0.03)
    assert (row["test_ci_low"], row["test_ci_high"]) == bootstrap_mean_ci([0.2, 0.4])
    markdown = energy_markdown([row], ["test"])
    assert "| Grad-CAM | – | – | 0.300 [0.200, 0.400] |" in markdown
    assert "area share: test 0.030" in markdown and "1 maps without positive mass" in markdown


# --- xiqa pointing on hand-made shards ----------------------------------------------------------


def _shards(cache_path, folder, peaks_for, n_shards=2, method="m", **attr_overrides):
    """Shards whose maps peak where ``peaks_for(image_index)`` says."""
    return write_map_shards(
        cache_path,
        folder,
        lambda cache, i: _map_with_peak(*peaks_for(i), size=cache.size),
        n_shards=n_shards,
        method=method,
        dtype="float16",
        prob=0.9,
        **attr_overrides,
    )


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
    # A one-pixel map has all its mass at the peak: energy 1 on a box pixel, else 0.
    assert [float(r["energy"]) for r in counted] == [float(r["distance"] == "0.0") for r in counted]
    assert all(r["energy"] == r["box_share"] == "" for r in rows if r["counted"] == "0")
    corner = _shards(tiny_caches["val"], tmp_path, lambda i: (0, 0), method="corner")
    run_cli("pointing", "--images", tiny_caches["val"], "--tau", 3, "--out", out, *corner)
    with open(out, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["counted"] == "1"]
    boxes = [cache.boxes_of(cache.image_name.index(r["image_name"])) for r in rows]
    expected = [int(pointing_hit(_map_with_peak(0, 0, cache.size), b, 3)[0]) for b in boxes]
    assert [int(r["hit"]) for r in rows] == expected


def test_read_pointing_keeps_what_the_figures_show(tiny_caches, tmp_path):
    cache = load_cache(tiny_caches["val"])
    shards = _shards(tiny_caches["val"], tmp_path, _centre_of_first_box(cache))
    out = tmp_path / "p.csv"
    run_cli("pointing", "--images", tiny_caches["val"], "--tau", 3, "--out", out, *shards)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    result = read_pointing(out)
    assert result.images == [r["image_name"] for r in rows]
    counted = [r for r in rows if r["counted"] == "1"]
    assert result.peak == {r["image_name"]: (int(r["peak_x"]), int(r["peak_y"])) for r in counted}
    assert result.n_boxes == {r["image_name"]: int(r["n_boxes"]) for r in counted}
    first = next(k for k, r in enumerate(rows) if r["counted"] == "1")
    rows[first]["hit"] = "2"  # a number, but no hit or miss
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(InputError, match=f"line {first + 2}: not an xiqa pointing row"):
        read_pointing(out)


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
            distance = 1.0 if hit else 30.0
            ties = 2 if k == 0 else 1
            writer.writerow([f"{k}.jpg", 0, 0, ties, distance, hit, 1, 0.9, 1, 1, 0.5, 0.1])


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
    scores = read_scores(tmp_path, methods, ["val", "test"])
    rows = pointing_table(scores, methods, ["val", "test"], paper=True)
    ng, gc = rows
    assert (ng["method"], ng["layer_type"], ng["heatmap"]) == ("NormGrad", "conv1x1", "single")
    assert ng["val_accuracy"] == 0.8 and ng["val_n"] == 10 and ng["val_p_vs_best"] == ""
    assert (round(ng["val_ci_low"], 4), round(ng["val_ci_high"], 4)) == (0.4902, 0.9433)
    assert gc["val_accuracy"] == 0.3
    assert gc["val_p_vs_best"] == pytest.approx(mcnemar_exact(2, 7))
    assert ng["val_tied_peaks"] == 0.1
    assert ng["val_paper"] == 0.876 and gc["test_paper"] == 0.656
    # Aliases name the same setup on the paper's ResNet-34; another layer does not.
    aliases = {
        "normgrad-conv1x1-single": {**methods["normgrad-conv1x1-single"], "layers": ["last"]},
        "gradcam": {"family": "gradcam", "layer": "layer4.1"},
    }
    ng_alias, gc_other = pointing_table(scores, aliases, ["val", "test"], paper=True)
    assert ng_alias["val_paper"] == 0.876 and gc_other["test_paper"] == ""
    markdown = pointing_markdown(rows, ["val", "test"], 25)
    assert "| NormGrad | conv1x1 | single | 0.800 [0.490, 0.943] | best | 10% |" in markdown
    assert "paper val" in markdown
    latex = pointing_latex(rows, ["val", "test"], 25)
    assert r"\begin{tabular}{lllrrrr}" in latex and latex.count(r"\\") == 3  # header and two rows
    assert latex.count("{") == latex.count("}")
    not_paper = pointing_table(scores, methods, ["val", "test"], paper=False)
    assert not_paper[0]["val_paper"] == ""


def test_old_pointing_csv_asks_for_a_rerun(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("image_name,peak_x,peak_y,n_ties,distance,hit,label,prob,counted,n_boxes\n")
    with pytest.raises(InputError, match="no column energy, box_share.*rerun xiqa pointing"):
        read_pointing(path)


# --- the pointing curve ----------------------------------------------------------------------


def test_curve_taus_always_hold_tau():
    assert curve_taus(6, [0.5, 1, 2]) == [3, 6, 12]
    assert curve_taus(0.3, [1 / 3, 2]) == [0.3 * (1 / 3), 0.3, 0.6]  # tau is on the curve
    with pytest.raises(InputError, match="-1 is not a positive multiple"):
        curve_taus(6, [1, -1])


def test_curve_at_each_tau_is_the_table_at_that_tau(tiny_caches, tmp_path):
    """The curve re-thresholds the stored distances; the table's hits come from xiqa pointing
    run at that tau. They agree exactly, also at tolerances equal to a peak's distance (a miss:
    the rule is strict), which a rounded distance would get wrong."""
    shards = _shards(tiny_caches["val"], tmp_path, lambda i: ((7 * i) % 32, (11 * i + 3) % 32))
    stored = tmp_path / "stored.csv"
    run_cli("pointing", "--images", tiny_caches["val"], "--tau", 3, "--out", stored, *shards)
    result = read_pointing(stored)
    distances = sorted(set(result.distance.values()))
    assert any(round(d, 4) < d for d in distances)  # the sensitive case is present
    assert any(d == int(d) > 0 for d in distances)  # and an exact whole-pixel distance
    taus = [*distances, *(d + 1e-9 for d in distances), 0.5, 100.0]
    curve = {row["tau"]: row for row in pointing_curve({("m", "val"): result}, taus, 3)}
    for tau in taus:
        table = tmp_path / "at-tau.csv"
        run_cli(
            "pointing", "--images", tiny_caches["val"], "--tau", repr(tau), "--out", table, *shards
        )
        at_tau = read_pointing(table)
        assert curve[tau]["hits"] == sum(at_tau.hits.values()), tau
        assert curve[tau]["accuracy"] == at_tau.accuracy and curve[tau]["n"] == at_tau.n
    assert curve[100.0]["accuracy"] == 1.0 and curve[0.5]["accuracy"] < 1.0


@pytest.mark.parametrize(
    ("factors", "message"),
    [("1,x", "--curve-factors '1,x': not numbers"), ("1,0", "0 is not a positive multiple")],
)
def test_aggregate_refuses_bad_curve_factors(tmp_path, factors, message):
    result = run_cli(
        "aggregate",
        "--results",
        tmp_path,
        "--methods",
        '{"gradcam": {"family": "gradcam"}}',
        "--tau",
        6,
        "--curve-factors",
        factors,
    )
    assert_one_line_error(result, message)
    assert not list(tmp_path.iterdir())


def test_table_names_the_n_of_a_method_run_on_a_subset():
    from xiqa.evaluation.tables import pointing_latex, pointing_markdown

    def row(name, hits, n):
        return {
            "method": name,
            "layer_type": "–",
            "heatmap": "–",
            "val_accuracy": hits / n,
            "val_ci_low": 0.1,
            "val_ci_high": 0.9,
            "val_n": n,
            "val_p_vs_best": "",
            "val_tied_peaks": 0.0,
            "val_paper": "",
        }

    rows = [row("A", 100, 150), row("B", 120, 150), row("Score-CAM", 6, 16)]
    table = pointing_markdown(rows, ["val"], 6)
    assert "(n = 150)" in table.splitlines()[0]  # the header: most methods' n
    assert "| Score-CAM | – | – | 0.375 [0.100, 0.900] (n = 16) |" in table
    assert "0.667 [0.100, 0.900] |" in table  # the others carry no n of their own
    assert "0.375 [0.100--0.900] (n = 16)" in pointing_latex(rows, ["val"], 6)
