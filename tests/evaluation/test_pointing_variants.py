"""The pointing game's variants (the authors' follow-up study): other tolerances and a Gaussian
smoothing of the map before the peak. The blur against torchvision's gaussian_blur and a
brute-force 2-D convolution; xiqa pointing's smoothed columns against the pointing rule applied
to independently blurred maps; the variants table against xiqa pointing run at each tolerance."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from xiqa.config import check_config
from xiqa.data.cache import load_cache
from xiqa.errors import InputError
from xiqa.evaluation.pointing import Smoothing, parse_smoothings, pointing_hit
from xiqa.evaluation.tables import pointing_variants, read_pointing, variants_markdown

from conftest import REPO, assert_one_line_error, run_cli, write_map_shards


def _torchvision_blur(saliency_map: np.ndarray, smoothing: Smoothing) -> np.ndarray:
    """The oracle: torchvision's Gaussian blur (reflect padding without the edge pixel)."""
    image = torch.from_numpy(np.asarray(saliency_map, dtype=np.float64))[None, None]
    size, sigma = [smoothing.kernel] * 2, [smoothing.sigma] * 2
    return gaussian_blur(image, size, sigma)[0, 0].numpy()


def _brute_force_blur(saliency_map: np.ndarray, smoothing: Smoothing) -> np.ndarray:
    """A 2-D Gaussian kernel, normalised over its square, summed pixel by pixel over the map
    padded by numpy's 'reflect' (d c b | a b c d)."""
    r = (smoothing.kernel - 1) // 2
    offsets = np.arange(-r, r + 1)
    kernel = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * smoothing.sigma**2))
    kernel /= kernel.sum()
    padded = np.pad(np.asarray(saliency_map, dtype=np.float64), r, mode="reflect")
    height, width = np.shape(saliency_map)
    out = np.zeros((height, width))
    for y in range(height):
        for x in range(width):
            out[y, x] = (padded[y : y + 2 * r + 1, x : x + 2 * r + 1] * kernel).sum()
    return out


def test_smoothing_parses_sigma_and_kernel():
    assert Smoothing.parse("1") == Smoothing(1.0, 7)  # 2 * ceil(3 sigma) + 1
    assert Smoothing.parse("0.5") == Smoothing(0.5, 5)
    assert Smoothing.parse("1.2:5") == Smoothing(1.2, 5)
    assert Smoothing.parse("1").suffix == "g1k7" and Smoothing(0.5, 3).suffix == "g0.5k3"
    assert Smoothing(1.0, 7).columns() == [
        "peak_x_g1k7",
        "peak_y_g1k7",
        "n_ties_g1k7",
        "distance_g1k7",
        "hit_g1k7",
    ]
    for text, message in [
        ("0", "sigma must be a positive number"),
        ("nan", "sigma must be a positive number"),
        ("1:4", "the kernel must be an odd number"),
        ("1:-1", "the kernel must be an odd number"),
        ("x", "not SIGMA or SIGMA:KERNEL"),
        ("1:2.5", "not SIGMA or SIGMA:KERNEL"),
    ]:
        with pytest.raises(InputError, match=message):
            Smoothing.parse(text)
    with pytest.raises(InputError, match="g1k7 is given twice"):
        parse_smoothings(["1", "1:7"])


@pytest.mark.parametrize("smoothing", [Smoothing(1, 7), Smoothing(0.5, 5), Smoothing(2.5, 9),
                                       Smoothing(1, 3), Smoothing(3, 1)])  # fmt: skip
def test_blur_agrees_with_torchvision_and_brute_force(smoothing):
    rng = np.random.default_rng(0)
    saliency = rng.random((23, 30)).astype(np.float32)
    ours = smoothing.apply(saliency)
    assert ours.dtype == np.float64 and ours.shape == saliency.shape
    np.testing.assert_allclose(ours, _torchvision_blur(saliency, smoothing), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours, _brute_force_blur(saliency, smoothing), rtol=0, atol=1e-12)


def test_blur_moves_the_peak_from_a_spike_to_a_blob_by_hand():
    # A one-pixel spike of 1 and a 5x5 blob of 0.8. With sigma 1 on 7 px the 1-D weights are
    # exp(-x^2 / 2) / 2.5066 for x = -3..3: the spike keeps 1 * 0.3989^2 = 0.159 at its pixel,
    # the blob's centre 0.8 * ((1 + 2 (0.6065 + 0.1353)) / 2.5066)^2 = 0.785.
    saliency = np.zeros((32, 32), np.float32)
    saliency[2, 2] = 1.0
    saliency[18:23, 18:23] = 0.8
    blurred = Smoothing(1, 7).apply(saliency)
    assert blurred[2, 2] == pytest.approx(0.1592, abs=1e-4)
    assert blurred[20, 20] == pytest.approx(0.785, abs=1e-3)
    boxes = np.array([[16.0, 16.0, 25.0, 25.0]])
    assert pointing_hit(saliency, boxes, 6)[:3] == (False, 2, 2)
    assert pointing_hit(blurred, boxes, 6)[:3] == (True, 20, 20)


def _spike_and_blob(cache, i):
    """A spike of 1 in the corner and a 5x5 blob of 0.8 on the first box's centre."""
    x0, y0, x1, y1 = cache.boxes_of(int(i))[0]
    x, y = int((x0 + x1) / 2), int((y0 + y1) / 2)
    saliency = np.zeros((cache.size, cache.size), np.float32)
    saliency[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3] = 0.8
    saliency[0, 0] = 1.0
    return saliency


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_pointing_scores_each_smoothing_as_its_own_columns(tiny_caches, tmp_path):
    cache = load_cache(tiny_caches["val"])
    shards = write_map_shards(tiny_caches["val"], tmp_path, _spike_and_blob, method="m", prob=0.9)
    plain, smoothed = tmp_path / "plain.csv", tmp_path / "smoothed.csv"
    args = ("pointing", "--images", tiny_caches["val"], "--tau", 2)
    assert run_cli(*args, "--out", plain, *shards).exit_code == 0
    result = run_cli(*args, "--smooth", "1", "--smooth", "0.5:3", "--out", smoothed, *shards)
    assert result.exit_code == 0, result.output
    rows = _rows(smoothed)
    # The unsmoothed columns are exactly those of a run without --smooth.
    base = _rows(plain)
    assert list(base[0]) == list(rows[0])[: len(base[0])]
    assert [{k: r[k] for k in base[0]} for r in rows] == base
    assert list(rows[0])[len(base[0]) :] == Smoothing(1, 7).columns() + Smoothing(0.5, 3).columns()
    sensitive = 0
    for row in rows:
        index = cache.image_name.index(row["image_name"])
        boxes = cache.boxes_of(index)
        for smoothing in (Smoothing(1, 7), Smoothing(0.5, 3)):
            s = smoothing.suffix
            if row["counted"] == "0":
                assert row[f"distance_{s}"] == row[f"hit_{s}"] == ""
                continue
            oracle = _torchvision_blur(_spike_and_blob(cache, index), smoothing)
            hit, x, y, distance = pointing_hit(oracle, boxes, 2)
            assert (int(row[f"peak_x_{s}"]), int(row[f"peak_y_{s}"])) == (x, y)
            assert float(row[f"distance_{s}"]) == distance and row[f"hit_{s}"] == str(int(hit))
        sensitive += row["hit"] == "0" and row["hit_g1k7"] == "1"
    assert sensitive > 0  # the spike wins unsmoothed, the blob after the blur


def test_variants_are_xiqa_pointing_at_each_tolerance(tiny_caches, tmp_path):
    shards = write_map_shards(tiny_caches["val"], tmp_path, _spike_and_blob, method="m", prob=0.9)
    smoothing = Smoothing(1, 7)
    args = ("pointing", "--images", tiny_caches["val"], "--smooth", "1")
    per_tau = {}
    for tau in (2.0, 3.5, 20.0):
        out = tmp_path / f"tau{tau}.csv"
        assert run_cli(*args, "--tau", tau, "--out", out, *shards).exit_code == 0
        per_tau[tau] = [r for r in _rows(out) if r["counted"] == "1"]
    result = read_pointing(tmp_path / "tau2.0.csv", [smoothing])
    rows = pointing_variants({("m", "val"): result}, [2.0, 3.5, 20.0], [smoothing])
    assert [(r["smoothing"], r["tau"]) for r in rows] == [
        (g, t) for g in ("none", "g1k7") for t in (2.0, 3.5, 20.0)
    ]
    for row in rows:
        column = "hit" if row["smoothing"] == "none" else "hit_g1k7"
        hits = sum(int(r[column]) for r in per_tau[row["tau"]])
        assert (row["hits"], row["n"]) == (hits, len(per_tau[row["tau"]])), row
        assert row["accuracy"] == hits / row["n"]
    assert rows[0]["accuracy"] == result.accuracy  # at the study's tau, the pointing table's
    methods = {"m": {"family": "gradcam"}}
    table = variants_markdown(rows, methods, ["val"])
    header = table.splitlines()[0]
    assert "val τ = 2 |" in header and "val τ = 3.5, σ = 1 (7×7 px)" in header
    assert table.count("| Grad-CAM | – | – |") == 1


def test_a_pointing_csv_without_a_smoothing_asks_for_a_rerun(tiny_caches, tmp_path):
    shards = write_map_shards(tiny_caches["val"], tmp_path, _spike_and_blob, method="m")
    out = tmp_path / "p.csv"
    run_cli("pointing", "--images", tiny_caches["val"], "--tau", 2, "--out", out, *shards)
    with pytest.raises(InputError, match="no column distance_g1k7.*rerun xiqa pointing"):
        read_pointing(out, [Smoothing(1, 7)])


@pytest.mark.parametrize(
    ("smooth", "message"),
    [
        (["0"], "--smooth '0': sigma must be a positive number"),
        (["1:4"], "--smooth '1:4': the kernel must be an odd number"),
        (["1", "1:7"], "--smooth: g1k7 is given twice"),
    ],
)
def test_pointing_refuses_a_bad_smoothing(tiny_caches, tmp_path, smooth, message):
    shards = write_map_shards(tiny_caches["val"], tmp_path, _spike_and_blob, method="m")
    out = tmp_path / "p.csv"
    options = [x for s in smooth for x in ("--smooth", s)]
    result = run_cli("pointing", "--images", tiny_caches["val"], "--tau", 2, *options,
                     "--out", out, *shards)  # fmt: skip
    assert_one_line_error(result, message)
    assert not out.exists()


@pytest.mark.parametrize(
    ("pointing", "message"),
    [
        ({"smoothing": [{"sigma": 1, "kernel": 4}]}, "smoothing.0: the kernel must be an odd"),
        ({"smoothing": [{"sigma": 0}]}, "pointing.smoothing.0.sigma"),
        ({"smoothing": [{"sigma": 1}, {"sigma": 1, "kernel": 7}]}, "1: the same .*g1k7.* 0"),
        ({"extra_taus": [0]}, "pointing.extra_taus"),
    ],
)
def test_the_config_check_refuses_bad_variants(pointing, message):
    config = {"pointing": {"tau": 6, **pointing}}
    with pytest.raises(InputError, match=message) as caught:
        check_config(config, REPO / "workflow" / "schemas" / "config.schema.yaml")
    assert "\n" not in str(caught.value)
