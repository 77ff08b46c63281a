"""The model-parameter randomisation test: Spearman by hand and against SciPy, the cascade's
stages and seeds, every registered family, and xiqa sanity with its bad input."""

from __future__ import annotations

import csv
import math
import os

import numpy as np
import pytest
import torch

from xiqa.evaluation.sanity import (
    randomisation_correlations,
    randomisation_stages,
    randomised_models,
    sanity_images,
    summarise,
)
from xiqa.evaluation.shards import sha256_file
from xiqa.model.network import build_model, save_model
from xiqa.saliency import FAMILIES

from conftest import assert_one_line_error, run_cli

RESNET18_STAGES = [
    "fc",
    "layer4.1",
    "layer4.0",
    "layer3.1",
    "layer3.0",
    "layer2.1",
    "layer2.0",
    "layer1.1",
    "layer1.0",
    "bn1",
    "conv1",
]


def _settled(arch: str, size: int) -> torch.nn.Module:
    """A randomly initialised model whose batch-norm statistics are not the defaults."""
    torch.manual_seed(0)
    model = build_model(arch).train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, size, size))
    return model.eval()


# --- summaries of the correlations ----------------------------------------------------------


def test_summary_ignores_undefined_correlations():
    summary = summarise([1.0, 0.5, math.nan, 0.0])
    assert summary == {"mean": 0.5, "sd": 0.5, "n": 3}
    assert summarise([0.3])["sd"] != summarise([0.3])["sd"]  # NaN: no spread from one value
    assert summarise([math.nan])["n"] == 0


# --- the cascade ---------------------------------------------------------------------------


def test_stages_run_from_the_output_down():
    assert randomisation_stages(build_model("resnet18")) == RESNET18_STAGES
    resnet34 = randomisation_stages(build_model("resnet34"))
    assert resnet34[:4] == ["fc", "layer4.2", "layer4.1", "layer4.0"]
    assert resnet34[-3:] == ["layer1.0", "bn1", "conv1"] and len(resnet34) == 3 + 16
    densenet = randomisation_stages(build_model("densenet121"))
    assert densenet[:3] == ["classifier", "features.norm5", "features.denseblock4"]
    assert densenet[-2:] == ["features.norm0", "features.conv0"]


def test_cascade_randomises_exactly_the_stages_above_and_is_seeded():
    model = _settled("resnet18", 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def stage_of(name: str) -> str:
        return next(s for s in RESNET18_STAGES if name == s or name.startswith(s + "."))

    seen = []
    for stage, randomised in randomised_models(model, seed=3):
        seen.append(stage)
        state = randomised.state_dict()
        changed = {
            stage_of(k)
            for k, v in state.items()
            if "num_batches_tracked" not in k and not torch.equal(v, before[k])
        }
        depth = 0 if stage == "none" else RESNET18_STAGES.index(stage) + 1
        assert changed == set(RESNET18_STAGES[:depth]), stage
    assert seen == ["none", *RESNET18_STAGES]
    for name, value in model.state_dict().items():  # the model itself is untouched
        assert torch.equal(value, before[name]), name

    def last(seed, stages=None):
        *_, (_, randomised) = randomised_models(model, stages, seed)
        return randomised.state_dict()

    same, other = last(3), last(4)
    assert all(torch.equal(same[k], v) for k, v in last(3).items())
    assert not torch.equal(same["layer2.0.conv1.weight"], other["layer2.0.conv1.weight"])
    # Measuring fewer stages randomises the same weights.
    fewer = last(3, ["layer4.0", "conv1"])
    assert all(torch.equal(fewer[k], v) for k, v in same.items())
    # A batch norm is re-initialised to weight 1, bias 0 and fresh running statistics.
    assert torch.equal(same["bn1.weight"], torch.ones(64))
    assert torch.equal(same["bn1.running_var"], torch.ones(64))


@pytest.mark.parametrize(
    "family",  # RISE (4000 masks) and Score-CAM (512 channels) at their defaults: one forward
    # pass per mask or channel, per image and stage, on a CPU
    [
        pytest.param(f, marks=pytest.mark.slow) if f in ("rise", "scorecam") else f
        for f in sorted(FAMILIES)
    ],
)
def test_every_family_correlates_exactly_one_before_randomisation(family):
    size = 64  # layer4 of ResNet-34 is 2x2: no layer map is constant
    model = _settled("resnet34", size)  # the registry's default layers are ResNet-34's
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        targets = model(images).argmax(1)  # the predicted class: a Grad-CAM map that is not 0
    stages = ["layer4.2", "conv1"]
    results = randomisation_correlations(model, images, targets, family, stages=stages, seed=0)
    assert [stage for stage, _ in results] == ["none", *stages]
    assert results[0][1].tolist() == [1.0, 1.0]
    for _, correlations in results[1:]:  # NaN: the randomised model's map is constant
        defined = correlations[np.isfinite(correlations)]
        assert np.all((defined >= -1) & (defined <= 1)), correlations
    assert not np.any(results[-1][1] > 1 - 1e-3)  # a fully random model changes every map


def test_images_are_a_seeded_subset_of_the_positives():
    labels = np.array([0, 1, 1, 0, 1, 1, 1, 0, 1])
    chosen = sanity_images(labels, 3, seed=5)
    assert len(set(chosen.tolist())) == 3 and np.all(labels[chosen] == 1)
    assert chosen.tolist() == sorted(chosen.tolist())
    assert np.array_equal(chosen, sanity_images(labels, 3, seed=5))
    assert sanity_images(labels, 6, seed=0).tolist() == [1, 2, 4, 5, 6, 8]


# --- xiqa sanity ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(path, _settled("resnet18", 32), {"arch": "resnet18", "image_size": 32})
    return path


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_sanity_command_writes_every_stage_and_image(model_file, tiny_caches, tmp_path):
    digest, mtime = sha256_file(model_file), os.stat(model_file).st_mtime_ns
    out = tmp_path / "sanity.csv"
    result = run_cli(
        "sanity",
        "--model",
        model_file,
        "--images",
        tiny_caches["val"],
        "--method",
        "my-ixg",
        "--params",
        '{"family": "input-x-gradient"}',
        "--n-images",
        2,
        "--seed",
        1,
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    rows = _read(out)
    assert list(rows[0]) == ["method", "stage_index", "stage", "image_name", "spearman"]
    assert len(rows) == 2 * (1 + len(RESNET18_STAGES))
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    assert stages == ["none", *RESNET18_STAGES] and {r["method"] for r in rows} == {"my-ixg"}
    assert [float(r["spearman"]) for r in rows[:2]] == [1.0, 1.0]
    assert sha256_file(model_file) == digest and os.stat(model_file).st_mtime_ns == mtime

    subset = tmp_path / "subset.csv"
    result = run_cli(
        "sanity",
        "--model",
        model_file,
        "--images",
        tiny_caches["val"],
        "--method",
        "input-x-gradient",
        "--n-images",
        2,
        "--seed",
        1,
        "--stages",
        "conv1,layer4.0",
        "--out",
        subset,
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    picked = _read(subset)
    assert [r["stage"] for r in picked] == ["none"] * 2 + ["layer4.0"] * 2 + ["conv1"] * 2
    full = {(r["stage"], r["image_name"]): r["spearman"] for r in rows}
    assert all(full[r["stage"], r["image_name"]] == r["spearman"] for r in picked)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--method", "nope"], "unknown method 'nope'"),
        (["--method", "gradcam", "--params", "[1]"], "--params must be a JSON object"),
        (["--method", "gradcam", "--n-images", "0"], "--n-images 0: must be at least 1"),
        (["--method", "gradcam", "--n-images", "-3"], "--n-images -3: must be at least 1"),
        (["--method", "gradcam", "--n-images", "999"], "only"),
        (["--method", "gradcam", "--stages", "layer9.9"], "unknown randomisation stage"),
    ],
)
def test_sanity_bad_input(model_file, tiny_caches, tmp_path, options, message):
    out = tmp_path / "out" / "sanity.csv"
    arguments = ["--model", model_file, "--images", tiny_caches["val"], "--out", out]
    if "--n-images" not in options:
        arguments += ["--n-images", "2"]
    result = run_cli("sanity", *arguments, *options, "--device", "cpu")
    assert_one_line_error(result, message)
    assert not out.exists()
    assert not out.parent.exists() or not list(out.parent.iterdir())
