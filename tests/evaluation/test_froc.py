"""The challenge's FROC by a hand-worked set of images, peaks by non-maximum suppression, the
prediction CSVs in the challenge's format, and the bootstrap against explicit resamples."""

from __future__ import annotations

import numpy as np
import pytest

from xiqa.data.annotation import parse_annotation
from xiqa.data.cache import load_cache
from xiqa.data.geometry import input_to_original
from xiqa.evaluation.froc import (
    CLASSIFICATION_CSV,
    LOCALIZATION_CSV,
    GroundTruth,
    Predictions,
    bootstrap_frocs,
    find_peaks,
    froc,
    read_localization,
)

from conftest import assert_one_line_error, run_cli, write_map_shards

# Five images, five objects: a rectangle and an ellipse (centre (40, 35), semi-axes 10 and 5);
# a triangle; a negative; two overlapping rectangles; another negative.
TRUTH = {
    "i0.png": "0 10 10 20 20;1 30 30 50 40",
    "i1.png": "2 0 0 10 0 0 10",
    "i2.png": "",
    "i3.png": "0 0 0 10 10;0 5 5 15 15",
    "i4.png": "",
}
PREDICTIONS = """image_path,prediction
i0.png,0.9 20 20;0.6 50 35;0.3 40 41
i1.png,0.8 5 5;0.8 20 20
i2.png,
i3.png,0.7 7 7;0.5 8 8
i4.png,0.95 1 1
"""


def _truth() -> GroundTruth:
    return GroundTruth(list(TRUTH), [parse_annotation(a) for a in TRUTH.values()])


def test_froc_of_a_hand_worked_set(tmp_path):
    # In score order (ties in file order), with F false positives of 5 images and H of 5 objects:
    # 0.95 i4 FP (F/5 = 0.2 >= 0.125: record H/5 = 0); 0.9 on the rectangle's corner (border:
    # a hit, H 1); 0.8 on the triangle's hypotenuse (a hit, H 2); 0.8 off it (FP, F/5 = 0.4 >=
    # 0.25: record 0.4); 0.7 inside both overlapping rectangles (two hits, H 4); 0.6 on the
    # ellipse's border (1^2 + 0^2 = 1: a hit, H 5); 0.5 inside both rectangles again (neither a
    # hit nor a false positive); 0.3 outside the ellipse ((6/5)^2 > 1: FP, F/5 = 0.6 >= 0.5:
    # record 1.0). Rates 1 .. 8 are never reached: they take the last value, 1.0.
    path = tmp_path / LOCALIZATION_CSV
    path.write_text(PREDICTIONS)
    result = froc(_truth(), read_localization(path, list(TRUTH)))
    assert result.sensitivities == (0.0, 0.4, 1.0, 1.0, 1.0, 1.0, 1.0)
    assert result.froc == pytest.approx(5.4 / 7)
    # The tie: with the false 0.8 first in the file, the 0.25 rate is recorded one hit earlier.
    path.write_text(PREDICTIONS.replace("0.8 5 5;0.8 20 20", "0.8 20 20;0.8 5 5"))
    result = froc(_truth(), read_localization(path, list(TRUTH)))
    assert result.sensitivities[:3] == (0.0, 0.2, 1.0)


def test_froc_without_a_false_positive_scores_zero_as_the_challenge_does(tmp_path):
    path = tmp_path / LOCALIZATION_CSV
    path.write_text("image_path,prediction\ni1.png,0.5 1 1\n")
    truth = GroundTruth(["i1.png"], [parse_annotation("2 0 0 10 0 0 10")])
    result = froc(truth, read_localization(path, ["i1.png"]))
    assert result.sensitivities == (0.0,) * 7  # no rate reached: nothing recorded


@pytest.mark.parametrize(
    "text, message",
    [
        ("image_path,prediction\nzz.png,0.5 1 1\n", "'zz.png' is not an image"),
        ("image_path,prediction\ni1.png,0.5 1\n", "is not 'probability x y'"),
        ("image_path,prediction\ni1.png,0.5 1 1\ni1.png,\n", "appears twice"),
        ("name,prediction\ni1.png,0.5 1 1\n", "header must be image_path,prediction"),
    ],
)
def test_bad_prediction_files_are_refused(tmp_path, text, message):
    path = tmp_path / LOCALIZATION_CSV
    path.write_text(text)
    with pytest.raises(Exception, match=message):
        read_localization(path, ["i1.png"])


def test_peaks_after_non_maximum_suppression():
    saliency = np.zeros((20, 20))
    saliency[5, 5] = 1.0
    saliency[5, 8] = 0.8  # 3 px from the first: suppressed at radius 4, kept at radius 2
    saliency[15, 15] = 0.5
    saliency[0, 19] = saliency[19, 0] = 0.3  # a tie: row-major order takes (19, 0) first
    assert find_peaks(saliency, 4, 10) == [(5, 5, 1.0), (15, 15, 0.5), (19, 0, 0.3), (0, 19, 0.3)]
    assert find_peaks(saliency, 2, 2) == [(5, 5, 1.0), (8, 5, 0.8)]
    plateau = np.zeros((6, 6))
    plateau[2:4, 2:4] = 1.0  # a plateau is one peak: its first pixel, the rest suppressed
    assert find_peaks(plateau, 2, 5)[0] == (2, 2, 1.0)
    assert all(v < 1 for *_, v in find_peaks(plateau, 2, 5)[1:])


def test_froc_command_writes_the_challenge_files(tiny_caches, tmp_path):
    cache = load_cache(tiny_caches["val"])

    def two_bumps(cache, index):
        saliency = np.zeros((cache.size, cache.size))
        saliency[3, 4] = 1.0
        saliency[20, 25] = 0.5
        return saliency

    shards = write_map_shards(tiny_caches["val"], tmp_path, two_bumps, all_images=True)
    out = tmp_path / "froc"
    result = run_cli("froc", "--images", tiny_caches["val"], "--out", out, "--top-k", 3, *shards)
    assert result.exit_code == 0, result.output
    # Parsed line by line as the challenge's script does: a header, one comma per line, points
    # separated by ';', fields by one space.
    lines = (out / LOCALIZATION_CSV).read_text().splitlines()
    assert lines[0] == "image_path,prediction"
    probs = {}
    for line in (out / CLASSIFICATION_CSV).read_text().splitlines()[1:]:
        name, prob = line.split(",")
        probs[name] = float(prob)
    names = []
    for line in lines[1:]:
        name, prediction = line.split(",")
        names.append(name)
        points = [tuple(map(float, p.split(" "))) for p in prediction.split(";")]
        index = cache.image_name.index(name)
        width, height = int(cache.width[index]), int(cache.height[index])
        assert points == [
            (probs[name], *input_to_original(4, 3, cache.size, width, height)),
            (probs[name] * 0.5, *input_to_original(25, 20, cache.size, width, height)),
        ]
    assert names == cache.image_name == list(probs)  # image_path = image_name, every image
    # The shards' float32 P (0.1 .. 0.9 over each shard's images) at full precision: exact.
    parts = np.array_split(np.arange(len(cache)), 2)
    expected = np.concatenate([np.linspace(0.1, 0.9, len(p)).astype(np.float32) for p in parts])
    assert [probs[n] for n in cache.image_name] == [float(p) for p in expected]


def test_froc_command_refuses_shards_of_the_positives_only(tiny_caches, tmp_path):
    shards = write_map_shards(tiny_caches["val"], tmp_path, lambda c, i: np.ones((c.size, c.size)))
    out = tmp_path / "froc"
    result = run_cli("froc", "--images", tiny_caches["val"], "--out", out, *shards)
    assert_one_line_error(result, "needs a map of every image", "--all-images")
    assert not out.exists()


def test_bootstrap_equals_the_froc_of_an_explicit_resample():
    truth = _truth()
    images = np.array([0, 0, 1, 1, 3, 3, 4], int)
    predictions = Predictions(
        images,
        np.array([0.9, 0.3, 0.8, 0.8, 0.7, 0.5, 0.95]),
        np.array([20, 40, 5, 20, 7, 8, 1], float),
        np.array([20, 41, 5, 20, 7, 8, 1], float),
    )
    rng = np.random.default_rng(3)
    draws = rng.integers(0, 5, (20, 5))
    values = bootstrap_frocs(truth, [predictions], draws=draws)[:, 0]
    for draw, value in zip(draws, values, strict=True):
        # The resample written out: image copies renamed, predictions in the copies' order.
        names = [f"c{c}" for c in range(5)]
        shapes = [truth.shapes[i] for i in draw]
        picked = [np.flatnonzero(images == i) for i in draw]
        explicit = Predictions(
            np.concatenate([np.full(len(p), c) for c, p in enumerate(picked)]).astype(int),
            np.concatenate([predictions.prob[p] for p in picked]),
            np.concatenate([predictions.x[p] for p in picked]),
            np.concatenate([predictions.y[p] for p in picked]),
        )
        expected = froc(GroundTruth(names, shapes), explicit).froc
        assert value == pytest.approx(expected, nan_ok=True)


def test_froc_table_ranks_a_map_on_the_objects_above_a_corner_map(tiny_caches, tmp_path):
    import csv
    import shutil

    from xiqa.data.geometry import shape_masks

    results = tmp_path / "results"
    (results / "cache").mkdir(parents=True)
    shutil.copy(tiny_caches["val"], results / "cache" / "val.h5")

    def on_objects(cache, index):
        masks = shape_masks(
            cache.shapes_of(index), int(cache.width[index]), int(cache.height[index]), cache.size
        )
        saliency = np.zeros((cache.size, cache.size))
        saliency[0, 0] = 0.5  # something for a negative, off every object
        return saliency + (masks.any(axis=0) if len(masks) else 0)

    def corner(cache, index):
        saliency = np.zeros((cache.size, cache.size))
        saliency[0, 0] = 1.0
        return saliency

    for method, maps_for in (("good", on_objects), ("corner", corner)):
        folder = tmp_path / method
        folder.mkdir()
        shards = write_map_shards(tiny_caches["val"], folder, maps_for, all_images=True)
        out = results / "froc" / method / "val"
        assert run_cli("froc", "--images", tiny_caches["val"], "--out", out, *shards).exit_code == 0
    result = run_cli(
        "froc-table", "--results", results, "--methods", "good,corner", "--splits", "val",
        "--n-boot", 50,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with open(results / "tables" / "froc.csv", newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert float(rows["good"]["froc"]) > float(rows["corner"]["froc"])
    assert rows["good"]["p_vs_best"] == "" and rows["corner"]["best"] == "good"
    assert 0 <= float(rows["corner"]["p_vs_best"]) <= 1
    assert (
        float(rows["good"]["ci_low"])
        <= float(rows["good"]["froc"])
        <= float(rows["good"]["ci_high"])
    )
    assert (results / "figures" / "froc.png").stat().st_size > 1000
    assert "supervised detector" in (results / "tables" / "froc.md").read_text()
