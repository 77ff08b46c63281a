"""Faithfulness metrics: deletion and insertion against a one-step-at-a-time loop written here,
ROAD against pytorch-grad-cam (test-only oracle), the tie rule, step counts and AUC by hand,
one forward per perturbed input, and xiqa faithfulness / faithfulness-table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from xiqa.data.cache import load_cache
from xiqa.errors import InputError
from xiqa.evaluation.faithfulness import (
    DEFAULT_BASELINE_VALUE,
    SUMMARY_COLUMNS,
    chance_map,
    curve_auc,
    curve_columns,
    curves_of,
    deletion_insertion,
    faithfulness_table,
    noisy_linear_impute,
    percentage_counts,
    rank_map,
    read_faithfulness,
    road,
    run_faithfulness,
    saliency_order,
    step_counts,
)
from xiqa.evaluation.shards import sha256_file, shard_indices
from xiqa.evaluation.stats import wilcoxon_signed_rank
from xiqa.model.network import IMAGENET_MEAN, IMAGENET_STD, build_model, save_model, to_model_input

from conftest import assert_one_line_error, run_cli, write_map_shards

SIZE = 32


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("resnet18").eval()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(path, model, {"arch": "resnet18", "image_size": SIZE})
    return path


def _images_and_maps(n=2, levels=None, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, SIZE, SIZE), dtype=np.uint8)
    maps = rng.random((n, SIZE, SIZE)).astype(np.float32)
    if levels:  # few distinct values: many ties
        maps = np.floor(maps * levels).astype(np.float32)
    return images, maps, np.array([1, 0, 1, 0][:n])


def _prob(model, grey: np.ndarray, target: int) -> float:
    with torch.inference_mode():
        logits = model(to_model_input(torch.from_numpy(grey.astype(np.float32))[None]))
    return float(torch.softmax(logits, 1)[0, target])


# --- hand-worked: the order, the counts, the area ------------------------------------------


def test_order_is_descending_with_ties_in_row_major_order():
    saliency = np.array([[1.0, 2.0], [2.0, 0.0]])
    assert saliency_order(saliency).tolist() == [1, 2, 0, 3]
    assert rank_map(saliency).tolist() == [[2, 0], [1, 3]]
    assert rank_map(np.zeros((3, 4))).ravel().tolist() == list(range(12))  # uniform: row-major
    with pytest.raises(ValueError, match="NaN"):
        saliency_order(np.array([[np.nan, 1.0]]))


def test_step_and_percentage_counts_round_halves_up():
    assert step_counts(10, 4).tolist() == [0, 3, 5, 8, 10]  # 2.5 -> 3, 7.5 -> 8
    assert step_counts(1024, 8).tolist() == [128 * k for k in range(9)]
    assert percentage_counts(1024, [10, 50, 90]).tolist() == [102, 512, 922]  # 102.4, 921.6
    assert percentage_counts(10, [25, 35]).tolist() == [3, 4]  # 2.5 -> 3, 3.5 -> 4


def test_trapezoid_auc_of_known_curves():
    x = np.linspace(0, 1, 5)
    assert curve_auc(x, 1 - x) == pytest.approx(0.5)
    assert curve_auc([0, 0.5, 1], [1, 0, 1]) == pytest.approx(0.5)
    assert curve_auc([0, 0.25, 1], [[0, 1, 1], [1, 1, 1]]).tolist() == pytest.approx([0.875, 1])


def test_uniform_map_deletes_row_by_row(model):
    """n_steps = S: step k removes the first k rows; the input stays grey in 3 channels."""
    images, _, targets = _images_and_maps(1)
    seen = []
    hook = model.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        deletion_insertion(model, images, np.zeros((1, SIZE, SIZE)), targets[:1], n_steps=SIZE)
    finally:
        hook.remove()
    inputs = torch.cat(seen)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    grey = inputs * std + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    assert torch.allclose(grey[:, 0], grey[:, 1], atol=1e-6)
    assert torch.allclose(grey[:, 0], grey[:, 2], atol=1e-6)
    step3 = grey[3, 0].numpy()
    assert np.allclose(step3[:3], DEFAULT_BASELINE_VALUE, atol=1e-6)
    assert np.allclose(step3[3:], images[0, 3:] / 255, atol=1e-6)


def test_chance_maps():
    assert not chance_map("uniform", 4, key=7).any()
    a, b = chance_map("random", 8, key=1), chance_map("random", 8, key=2)
    assert np.array_equal(a, chance_map("random", 8, key=1)) and not np.array_equal(a, b)
    with pytest.raises(InputError, match="unknown chance map"):
        chance_map("gaussian", 4, key=0)


def test_wilcoxon_signed_rank():
    assert wilcoxon_signed_rank([1, 2, 3], [1, 2, 3]) == 1.0
    assert math.isnan(wilcoxon_signed_rank([], []))
    # Six positive differences, no ties: the exact two-sided p is 2 / 2^6.
    assert wilcoxon_signed_rank([2, 3, 4, 5, 6, 7], [0, 0, 0, 0, 0, 0.5]) == pytest.approx(2 / 64)


# --- (a) deletion and insertion against a one-step-at-a-time loop -----------------------------


def _slow_curves(model, image, saliency, target, n_steps, start, fill):
    """Petsiuk et al.'s loop, one forward per step: order pixels with Python's sort (value
    descending, then flat index), perturb the first round(k n / n_steps)."""
    values = saliency.ravel().tolist()
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    n = len(values)
    probs, fractions = [], []
    for k in range(n_steps + 1):
        m = math.floor(k * n / n_steps + 0.5)
        x = start.copy().ravel()
        x[order[:m]] = fill.ravel()[order[:m]]
        probs.append(_prob(model, x.reshape(image.shape), target))
        fractions.append(m / n)
    steps = range(n_steps)
    area = sum((fractions[i + 1] - fractions[i]) * (probs[i] + probs[i + 1]) / 2 for i in steps)
    return np.array(probs), area


@pytest.mark.parametrize("levels", [None, 3])
def test_deletion_and_insertion_match_a_one_step_loop(model, levels):
    images, maps, targets = _images_and_maps(2, levels=levels)
    n_steps, sigma = 5, 2.0
    deletion, insertion = deletion_insertion(
        model, images, maps, targets, n_steps=n_steps, blur_sigma=sigma, batch_size=5
    )
    fractions = step_counts(SIZE * SIZE, n_steps) / SIZE**2
    for i in range(2):
        grey = images[i] / 255.0
        constant = np.full_like(grey, DEFAULT_BASELINE_VALUE)
        blurred = ndimage.gaussian_filter(grey, sigma, mode="reflect")
        slow_del, del_auc = _slow_curves(model, grey, maps[i], targets[i], n_steps, grey, constant)
        slow_ins, ins_auc = _slow_curves(model, grey, maps[i], targets[i], n_steps, blurred, grey)
        assert np.abs(deletion[i] - slow_del).max() < 1e-5
        assert np.abs(insertion[i] - slow_ins).max() < 1e-5
        assert curve_auc(fractions, deletion[i]) == pytest.approx(del_auc, abs=1e-5)
        assert curve_auc(fractions, insertion[i]) == pytest.approx(ins_auc, abs=1e-5)
    # Insertion ends on the image, deletion starts there.
    assert np.allclose(insertion[:, -1], deletion[:, 0], atol=1e-5)


def test_blur_deletion_and_constant_insertion(model):
    images, maps, targets = _images_and_maps(1)
    deletion, insertion = deletion_insertion(
        model, images, maps, targets, n_steps=3, deletion_baseline="blur",
        insertion_baseline="constant", baseline_value=0.2, blur_sigma=1.5,
    )  # fmt: skip
    grey = images[0] / 255.0
    blurred = ndimage.gaussian_filter(grey, 1.5, mode="reflect")
    slow_del, _ = _slow_curves(model, grey, maps[0], targets[0], 3, grey, blurred)
    slow_ins, _ = _slow_curves(model, grey, maps[0], targets[0], 3, np.full_like(grey, 0.2), grey)
    assert np.abs(deletion[0] - slow_del).max() < 1e-5
    assert np.abs(insertion[0] - slow_ins).max() < 1e-5


# --- (b) ROAD against pytorch-grad-cam --------------------------------------------------------


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # grad-cam's numpy use
def test_linear_imputation_matches_grad_cams_imputer():
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    images, maps, _ = _images_and_maps(1)
    grey = images[0] / 255.0
    for removed in (maps[0] > 0.3, maps[0] < 0.05, np.eye(SIZE, dtype=bool)):
        ours = to_model_input(torch.from_numpy(noisy_linear_impute(grey, removed))[None])[0]
        normalised = to_model_input(torch.from_numpy(grey)[None])[0].float()
        keep = torch.from_numpy((~removed).astype(np.float32))
        theirs = NoisyLinearImputer(noise=0.0)(normalised, keep)
        assert (ours.float() - theirs).abs().max() < 1e-5  # float32 throughout in theirs
        assert torch.equal(ours[:, ~torch.from_numpy(removed)].float(),
                           normalised[:, ~torch.from_numpy(removed)])  # fmt: skip


def test_imputation_noise_is_per_pixel_grey_and_seeded():
    rng = np.random.default_rng(0)
    grey = rng.random((64, 64))
    removed = rng.random((64, 64)) < 0.5
    clean = noisy_linear_impute(grey, removed)
    noisy = noisy_linear_impute(grey, removed, 0.05, np.random.default_rng(1))
    assert np.array_equal(noisy[~removed], grey[~removed])
    assert np.std(noisy[removed] - clean[removed]) == pytest.approx(0.05, rel=0.05)
    assert np.array_equal(noisy, noisy_linear_impute(grey, removed, 0.05, np.random.default_rng(1)))
    with pytest.raises(ValueError, match="known pixel"):
        noisy_linear_impute(grey, np.ones_like(removed))


def _grad_cam_road(model, images, maps, targets, percentages, kind):
    """pytorch-grad-cam's ROAD with its imputer's noise set to 0. It keeps the pixels below
    its percentile threshold (np.percentile, interpolated); the percentile halfway between the
    m-th and (m+1)-th largest removes exactly our round(p·n/100) = m pixels."""
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirst, ROADMostRelevantFirst
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    cls = ROADMostRelevantFirst if kind == "morf" else ROADLeastRelevantFirst
    n = SIZE * SIZE
    x = to_model_input(torch.from_numpy(images))
    out = []
    for m in percentage_counts(n, percentages):
        metric = cls(percentile=100 * (n - m - 0.5) / (n - 1))
        metric.perturbation.imputer.noise = 0.0
        target_fns = [ClassifierOutputSoftmaxTarget(int(t)) for t in targets]
        out.append(metric(x, maps, target_fns, model, return_diff=False))
    return np.stack(out, axis=1)


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # grad-cam's numpy use
def test_road_matches_grad_cam_without_noise(model):
    rng = np.random.default_rng(3)
    images, _, targets = _images_and_maps(2)
    # Distinct values that 1 - map keeps distinct (grad-cam thresholds 1 - map for LeRF).
    maps = np.stack([rng.permutation(SIZE * SIZE).reshape(SIZE, SIZE) for _ in range(2)])
    maps = (maps / (SIZE * SIZE)).astype(np.float32)
    percentages = (10, 50, 90)
    morf, lerf = road(model, images, maps, targets, percentages, noise=0.0, batch_size=4)
    their_morf = _grad_cam_road(model, images, maps, targets, percentages, "morf")
    their_lerf = _grad_cam_road(model, images, maps, targets, percentages, "lerf")
    assert np.abs(morf - their_morf).max() < 1e-4
    assert np.abs(lerf - their_lerf).max() < 1e-4
    # grad-cam's ROAD*Average is the mean over the percentages, our summary.
    assert np.allclose(morf.mean(1), their_morf.mean(1), atol=1e-4)


# --- (d) one forward per perturbed input; batch_size changes nothing --------------------------


def _count_rows(model):
    rows = []
    hook = model.register_forward_hook(lambda module, args, output: rows.append(len(args[0])))
    return rows, hook


def test_one_forward_per_perturbed_input_and_batch_size_is_invisible(model):
    images, maps, targets = _images_and_maps(2, levels=4)
    results = []
    for batch_size in (3, 7, 64):
        rows, hook = _count_rows(model)
        try:
            curves = deletion_insertion(model, images, maps, targets, n_steps=4,
                                        batch_size=batch_size)  # fmt: skip
            curves += road(model, images, maps, targets, (20, 60), batch_size=batch_size)
        finally:
            hook.remove()
        assert sum(rows) == 2 * 2 * 5 + 2 * 2 * 2  # every input once
        assert max(rows) <= batch_size
        assert len(rows) == math.ceil(20 / batch_size) + math.ceil(8 / batch_size)
        results.append(curves)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert np.abs(a - b).max() < 1e-5  # the noise too: seeded per image and step


# --- run_faithfulness, the CLI and the table --------------------------------------------------


def _shards(cache_path, model_path, folder, n_shards=2, method="m", seed=0, **overrides):
    """Shards of random maps of the first 4 positives, made by ``model_path``."""
    rng = np.random.default_rng(seed)
    return write_map_shards(
        cache_path,
        folder,
        lambda cache, i: rng.random((cache.size, cache.size)),
        n_shards=n_shards,
        method=method,
        prob=0.9,
        limit=4,
        **{"checkpoint_sha256": sha256_file(model_path), **overrides},
    )


FAST = ("--n-steps", 4, "--road-percentages", "25,75", "--batch-size", 16, "--device", "cpu")


def test_faithfulness_command_writes_every_map(model, model_file, tiny_caches, tmp_path):
    shards = _shards(tiny_caches["val"], model_file, tmp_path)
    out = tmp_path / "f.csv"
    images = ("--model", model_file, "--images", tiny_caches["val"])
    result = run_cli("faithfulness", *images, "--out", out, *FAST, *shards)
    assert result.exit_code == 0, result.output
    assert "deletion AUC" in result.stderr
    frame = read_faithfulness(out)
    assert list(frame.columns) == list(SUMMARY_COLUMNS) + curve_columns(4, (25, 75))
    cache = load_cache(tiny_caches["val"])
    assert frame["image_name"].tolist() == [
        cache.image_name[i] for i in np.flatnonzero(cache.label == 1)[:4]
    ]
    assert (frame["target"] == 1).all() and (frame["label"] == 1).all()
    x, deletion = curves_of(frame, "deletion")
    assert x.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert np.allclose(curve_auc(x, deletion), frame["deletion_auc"])  # 1024 / 4 divides
    assert np.allclose(frame["prob"], deletion[:, 0])
    _, morf = curves_of(frame, "road_morf")
    assert np.allclose(morf.mean(1), frame["road_morf_mean"])
    # The same maps through the library directly.
    again = run_faithfulness(model_file, tiny_caches["val"], shards, tmp_path / "g.csv",
                             n_steps=4, road_percentages=(25, 75), device="cpu")  # fmt: skip
    assert again["n"] == 4
    assert np.allclose(read_faithfulness(tmp_path / "g.csv")["deletion_auc"], frame["deletion_auc"])

    chance = tmp_path / "chance.csv"
    result = run_cli("faithfulness", *images, "--out", chance, "--chance", "--max-images", 3, *FAST)
    assert result.exit_code == 0, result.output
    rows = read_faithfulness(chance, baselines=True)
    assert rows["baseline"].tolist() == ["random"] * 3 + ["uniform"] * 3
    assert rows["image_name"].tolist()[:3] == rows["image_name"].tolist()[3:]
    result = run_cli("faithfulness", *images, "--out", chance, "--chance", "--max-images", 2,
                     "--targets", "predicted", *FAST)  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = read_faithfulness(chance, baselines=True)
    index = [cache.image_name.index(name) for name in rows["image_name"][:2]]
    with torch.inference_mode():
        predicted = model(to_model_input(torch.from_numpy(cache.images[index]))).argmax(1)
    assert rows["target"].tolist() == predicted.tolist() * 2


def test_faithfulness_scores_the_images_saliency_would_explain(model_file, tiny_caches, tmp_path):
    """Shards of every image (a FROC method's) are scored on the positives, or on every image
    with --all-images; --max-images picks the subset xiqa saliency picks, which the chance rows
    score too; shards without one of the chosen images are one error line."""
    cache = load_cache(tiny_caches["val"])
    rng = np.random.default_rng(3)
    shards = write_map_shards(
        tiny_caches["val"],
        tmp_path,
        lambda cache, i: rng.random((cache.size, cache.size)),
        all_images=True,
        prob=0.9,
        checkpoint_sha256=sha256_file(model_file),
    )
    images = ("--model", model_file, "--images", tiny_caches["val"])
    names = {
        (all_images, cap): [
            cache.image_name[i] for i in shard_indices(cache, 0, 1, all_images, cap)
        ]
        for all_images in (False, True)
        for cap in (None, 3)
    }
    assert len(names[False, None]) < len(names[True, None]) == len(cache)
    for all_images in (False, True):
        for cap in (None, 3):
            flags = (("--all-images",) if all_images else ()) + (
                ("--max-images", cap) if cap else ()
            )
            out = tmp_path / f"f-{all_images}-{cap}.csv"
            result = run_cli("faithfulness", *images, "--out", out, *FAST, *flags, *shards)
            assert result.exit_code == 0, result.output
            frame = read_faithfulness(out)
            assert frame["image_name"].tolist() == names[all_images, cap]
            assert frame["label"].tolist() == [
                cache.label[cache.image_name.index(n)] for n in names[all_images, cap]
            ]
            chance = tmp_path / f"c-{all_images}-{cap}.csv"
            result = run_cli("faithfulness", *images, "--out", chance, "--chance", *FAST, *flags)
            assert result.exit_code == 0, result.output
            rows = read_faithfulness(chance, baselines=True)
            assert rows["image_name"].tolist() == names[all_images, cap] * 2
    negatives = write_map_shards(
        tiny_caches["val"],
        tmp_path / "neg",
        lambda cache, i: rng.random((cache.size, cache.size)),
        all_images=True,
        n_shards=1,
        limit=int(np.flatnonzero(cache.label == 1)[0]),  # the images before the first positive
        prob=0.9,
        checkpoint_sha256=sha256_file(model_file),
    )
    out = tmp_path / "none.csv"
    result = run_cli("faithfulness", *images, "--out", out, *FAST, *negatives)
    assert_one_line_error(result, str(negatives[0]), "no map of a positive image")
    assert not out.exists()


def test_faithfulness_refuses_bad_shards_and_writes_nothing(model_file, tiny_caches, tmp_path):
    images = ("--model", model_file, "--images", tiny_caches["val"])
    out = tmp_path / "f.csv"
    good = _shards(tiny_caches["val"], model_file, tmp_path)
    other = _shards(tiny_caches["val"], model_file, tmp_path / "o", method="m2", n_shards=2)
    result = run_cli("faithfulness", *images, "--out", out, *FAST, good[0], other[1])
    assert_one_line_error(result, str(other[1]), "method")
    result = run_cli("faithfulness", *images, "--out", out, *FAST, good[0])
    assert_one_line_error(result, "shards [1]", "missing")
    wrong = tmp_path / "wrong" / "model.pt"
    torch.manual_seed(1)
    save_model(wrong, build_model("resnet18"), {"arch": "resnet18", "image_size": SIZE})
    result = run_cli("faithfulness", "--model", wrong, "--images", tiny_caches["val"], "--out",
                     out, *FAST, *good)  # fmt: skip
    assert_one_line_error(result, str(good[0]), "checkpoint_sha256")
    result = run_cli("faithfulness", *images, "--out", out, *FAST, "--road-percentages", "0,50",
                     *good)  # fmt: skip
    assert_one_line_error(result, "--road-percentages", "between 0 and 100")
    result = run_cli("faithfulness", *images, "--out", out, *FAST, "--chance", *good)
    assert_one_line_error(result, "--chance")
    assert not out.exists()
    assert not list(tmp_path.glob(".f.csv*"))


def _table_inputs(n=6, seed=0):
    rng = np.random.default_rng(seed)
    names = [f"{i}.jpg" for i in range(n)]

    def frame(shift):
        values = {
            "image_name": names,
            "label": 1,
            "target": 1,
            "prob": 0.9,
            "deletion_auc": rng.random(n) * 0.2 + shift,
            "insertion_auc": rng.random(n) * 0.2 + 0.5 - shift,
            "road_morf_mean": rng.random(n) * 0.1 + shift,
            "road_lerf_mean": rng.random(n) * 0.1 + 0.6,
            "deletion_0": 0.9,
            "deletion_1": 0.1 + shift,
        }
        return pd.DataFrame(values)

    scores = {("good", "val"): frame(0.0), ("bad", "val"): frame(0.3)}
    chance = {("random-map", "val"): frame(0.2), ("uniform-map", "val"): frame(0.25)}
    return scores, chance


def test_faithfulness_table_picks_the_best_and_pairs_the_images():
    scores, chance = _table_inputs()
    rows = faithfulness_table(scores, chance, ["good", "bad"], ["val"])
    assert [r["name"] for r in rows] == ["good", "bad", "random-map", "uniform-map"]
    good, bad = rows[0], rows[1]
    assert good["deletion_best"] == "good" and good["deletion_p_vs_best"] == ""
    assert good["insertion_best"] == "good"
    expected = wilcoxon_signed_rank(
        scores["bad", "val"]["deletion_auc"], scores["good", "val"]["deletion_auc"]
    )
    assert bad["deletion_p_vs_best"] == pytest.approx(expected)
    assert bad["deletion"] == pytest.approx(scores["bad", "val"]["deletion_auc"].mean())
    assert good["deletion_ci_low"] <= good["deletion"] <= good["deletion_ci_high"]
    assert rows[2]["deletion_p_vs_best"] != ""  # chance rows are tested against the best too


def test_faithfulness_table_command(tmp_path):
    scores, chance = _table_inputs()
    folder = tmp_path / "faithfulness"
    for (method, split), frame in scores.items():
        (folder / method).mkdir(parents=True)
        frame.to_csv(folder / method / f"{split}.csv", index=False)
    (folder / "_baselines").mkdir()
    pd.concat(
        [f.assign(baseline=name.removesuffix("-map")) for (name, _), f in chance.items()]
    ).to_csv(folder / "_baselines" / "val.csv", index=False)
    result = run_cli("faithfulness-table", "--results", tmp_path, "--methods", "good,bad",
                     "--splits", "val")  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "tables" / "faithfulness.csv")
    assert table["name"].tolist() == ["good", "bad", "random-map", "uniform-map"]
    markdown = (tmp_path / "tables" / "faithfulness.md").read_text()
    assert "| good | 6 |" in markdown and "best" in markdown
    assert (tmp_path / "tables" / "faithfulness.tex").exists()
    assert (tmp_path / "figures" / "faithfulness.png").exists()
    result = run_cli("faithfulness-table", "--results", tmp_path, "--methods",
                     '{"good": {}, "missing": {}}', "--splits", "val")  # fmt: skip
    assert_one_line_error(result, "missing", "not found")
