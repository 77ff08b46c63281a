"""Training: the loss falls, a killed run resumes to the same weights, outputs are complete."""

from __future__ import annotations

import csv
import dataclasses
import json
import typing

import pytest
import torch
import yaml

from xiqa.errors import InputError
from xiqa.evaluation.stats import roc_auc
from xiqa.model.train import TrainConfig, train

from conftest import REPO, assert_one_line_error, run_cli

TINY = dict(arch="resnet18", batch_size=8, lr=0.01, warmup_iters=4, lr_step=2, seed=1)


class Interrupted(Exception):
    pass


def _train(caches, out, config, split="train", **options):
    """Train on the tiny caches' ``split`` (validating on val), on the CPU."""
    return train(caches[split], caches["val"], out, config, device="cpu", **options)


def _history(run):
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_warm_up_rises_linearly_in_the_first_epoch_only():
    """The authors' schedule: factor 1/1000 (1 - x/W) + x/W at iteration x < W of epoch 0,
    W = min(warmup_iters, iterations per epoch - 1); later epochs only decay by lr_gamma."""
    config = TrainConfig(lr=0.1, warmup_iters=1000, lr_step=5, lr_gamma=0.1)
    # 11 iterations per epoch: W = min(1000, 10) = 10.
    assert config.lr_at(0, 0, 11) == pytest.approx(0.1 * 0.001, rel=1e-12)
    assert config.lr_at(5, 0, 11) == pytest.approx(0.1 * (0.001 * 0.5 + 0.5), rel=1e-12)
    assert config.lr_at(9, 0, 11) == pytest.approx(0.1 * (0.001 * 0.1 + 0.9), rel=1e-12)
    assert config.lr_at(10, 0, 11) == pytest.approx(0.1, rel=1e-12)
    assert config.lr_at(0, 1, 11) == pytest.approx(0.1, rel=1e-12)  # the second epoch: none
    assert config.lr_at(3, 4, 11) == pytest.approx(0.1, rel=1e-12)
    assert config.lr_at(0, 5, 11) == pytest.approx(0.01, rel=1e-12)  # x0.1 after lr_step epochs
    # A cap shorter than the epoch: W = 4.
    short = dataclasses.replace(config, warmup_iters=4)
    assert short.lr_at(2, 0, 37) == pytest.approx(0.1 * (0.001 * 0.5 + 0.5), rel=1e-12)
    assert short.lr_at(4, 0, 37) == pytest.approx(0.1, rel=1e-12)
    # Object-CXR at batch 16 (500 iterations per epoch): W = 499.
    paper = TrainConfig(lr=0.005)
    assert paper.lr_at(498, 0, 500) == pytest.approx(0.005 * (0.001 / 499 + 498 / 499))
    assert paper.lr_at(499, 0, 500) == pytest.approx(0.005, rel=1e-12)
    # No warm-up: warmup_iters 0, or a one-iteration epoch (W = 0).
    assert dataclasses.replace(config, warmup_iters=0).lr_at(0, 0, 11) == 0.1
    assert config.lr_at(0, 0, 1) == 0.1


def test_training_applies_the_schedule_step_by_step(tiny_caches, tmp_path, monkeypatch):
    """30 training images at batch 8: 3 iterations per epoch, so W = min(4, 2) = 2."""
    applied = []
    step = torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):
        applied.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    _train(tiny_caches, tmp_path, TrainConfig(**{**TINY, "lr_step": 1}, epochs=2))
    expected = [0.01 * 0.001, 0.01 * (0.001 * 0.5 + 0.5), 0.01, 0.001, 0.001, 0.001]
    assert applied == pytest.approx(expected, rel=1e-12)
    assert [float(row["lr"]) for row in _history(tmp_path)] == pytest.approx([0.01, 0.001])


def test_recipe_bounds_are_checked():
    with pytest.raises(InputError, match="lr must be > 0"):
        TrainConfig(lr=0).check()
    with pytest.raises(InputError, match="momentum must be <= 1"):
        TrainConfig(momentum=1.5).check()
    with pytest.raises(InputError, match="warmup_iters must be >= 0"):
        TrainConfig(warmup_iters=-1).check()
    TrainConfig(momentum=1, warmup_iters=0, weight_decay=0).check()  # the bounds themselves


def test_the_schema_train_section_is_the_recipe():
    """The workflow schema's recipe (the train section and each model's keys) has TrainConfig's
    keys, types and bounds, and no defaults: those are TrainConfig's alone, so that a model's
    recipe is its own keys over the train section's over TrainConfig's."""
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    recipe = {"$ref": "#/$defs/recipe"}
    assert schema["properties"]["train"]["$ref"] == recipe["$ref"]
    assert schema["properties"]["models"]["additionalProperties"] == recipe
    section = schema["$defs"]["recipe"]["properties"]
    fields = dataclasses.fields(TrainConfig)
    assert list(section) == [field.name for field in fields]
    json_type = {str: "string", int: "integer", float: "number", bool: "boolean"}
    hints = typing.get_type_hints(TrainConfig)
    for field in fields:
        entry, meta = section[field.name], field.metadata
        assert entry["type"] == json_type[hints[field.name]], field.name
        assert "default" not in entry, field.name
        bounds = {}
        if meta["min"] is not None:
            bounds["exclusiveMinimum" if meta["min_open"] else "minimum"] = meta["min"]
        if meta["max"] is not None:
            bounds["maximum"] = meta["max"]
        numeric = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")
        assert {k: v for k, v in entry.items() if k in numeric} == bounds, field.name


@pytest.mark.slow  # trains for several epochs, or several times
def test_loss_falls_on_a_tiny_set(tiny_caches, tmp_path):
    config = TrainConfig(
        **{
            **TINY,
            "augment": False,
            "lr_step": 100,
            "lr": 0.001,
            "batch_size": 16,
            "warmup_iters": 0,
        },
        epochs=8,
    )
    _train(tiny_caches, tmp_path / "run", config)
    losses = [float(row["train_loss"]) for row in _history(tmp_path / "run")]
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < 0.6 * losses[0], losses


@pytest.mark.slow  # trains for several epochs, or several times
def test_killed_run_resumes_to_the_same_weights(tiny_caches, tmp_path):
    config = TrainConfig(**TINY, epochs=3)
    _train(tiny_caches, tmp_path / "whole", config)

    def stop_after_first(epoch, row):
        if epoch == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        _train(tiny_caches, tmp_path / "split", config, on_epoch_end=stop_after_first)
    assert not (tmp_path / "split" / "model.pt").exists()
    assert len(_history(tmp_path / "split")) == 1
    resumed_epochs = []
    _train(
        tiny_caches,
        tmp_path / "split",
        config,
        on_epoch_end=lambda epoch, row: resumed_epochs.append(epoch),
    )
    assert resumed_epochs == [2, 3]  # epoch 1 was not trained again

    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["model"]
    split = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["model"]
    for key in whole:
        torch.testing.assert_close(split[key], whole[key], atol=1e-6, rtol=0)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in _history(tmp_path / "whole")]
    assert strip == [
        {k: v for k, v in r.items() if k != "seconds"} for r in _history(tmp_path / "split")
    ]
    best_whole = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)
    best_split = torch.load(tmp_path / "split" / "model.pt", weights_only=True)
    assert best_whole["epoch"] == best_split["epoch"]
    for key in best_whole["state_dict"]:
        torch.testing.assert_close(
            best_split["state_dict"][key], best_whole["state_dict"][key], atol=1e-6, rtol=0
        )


@pytest.mark.slow  # trains for several epochs, or several times
def test_outputs_and_best_epoch_by_clean_val_auc(tiny_caches, tmp_path):
    config = TrainConfig(**TINY, epochs=2)
    metrics = _train(tiny_caches, tmp_path, config)
    rows = _history(tmp_path)
    assert list(rows[0]) == ["epoch", "train_loss", "val_auc", "lr", "seconds"]
    aucs = [float(r["val_auc"]) for r in rows]
    assert metrics["best_epoch"] == 1 + aucs.index(max(aucs))
    model = torch.load(tmp_path / "model.pt", weights_only=True)
    assert model["epoch"] == metrics["best_epoch"]
    assert model["arch"] == "resnet18" and model["image_size"] == 32
    assert model["config"]["batch_size"] == 8
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["val_auc"] == pytest.approx(max(aucs), abs=1e-6)
    low, high = saved["val_auc_ci95"]
    assert low <= saved["val_auc"] <= high
    # Predicting the val cache with model.pt reproduces the best epoch's (clean) val AUC.
    result = run_cli(
        "predict",
        "--model",
        tmp_path / "model.pt",
        "--images",
        tiny_caches["val"],
        "--out",
        tmp_path / "val.csv",
        "--metrics",
        tmp_path / "val.json",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    with open(tmp_path / "val.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["image_name", "label", "prob"]
    labels, probs = [int(r["label"]) for r in rows], [float(r["prob"]) for r in rows]
    assert roc_auc(labels, probs) == pytest.approx(saved["val_auc"], abs=1e-4)
    assert json.loads((tmp_path / "val.json").read_text())["auc"] == pytest.approx(
        roc_auc(labels, probs), abs=1e-4
    )


@pytest.mark.slow  # trains for several epochs, or several times
def test_resume_with_another_recipe_is_refused(tiny_caches, tmp_path):
    _train(tiny_caches, tmp_path, TrainConfig(**TINY, epochs=1))
    with pytest.raises(InputError, match="different lr"):
        _train(tiny_caches, tmp_path, TrainConfig(**{**TINY, "lr": 0.5}, epochs=2))
    # The workflow's choice: discard it and start afresh.
    metrics = _train(
        tiny_caches, tmp_path, TrainConfig(**{**TINY, "lr": 0.5}, epochs=1), restart_if_changed=True
    )
    assert metrics["epochs"] == 1
    with pytest.raises(InputError, match="different lr"):
        _train(tiny_caches, tmp_path, TrainConfig(**TINY, epochs=2))
    _train(tiny_caches, tmp_path, TrainConfig(**TINY, epochs=1), restart_if_changed=True)
    # More epochs with the same recipe continue the run.
    metrics = _train(tiny_caches, tmp_path, TrainConfig(**TINY, epochs=2))
    assert metrics["epochs"] == 2


def test_resume_with_other_data_is_refused(tiny_caches, tmp_path):
    _train(tiny_caches, tmp_path, TrainConfig(**TINY, epochs=1))
    with pytest.raises(InputError, match="different train_cache"):
        _train(tiny_caches, tmp_path, TrainConfig(**TINY, epochs=2), split="test")


def test_bad_caches_and_mismatched_model(tiny_caches, tmp_path):
    fake = tmp_path / "fake.h5"
    fake.write_text("not an HDF5 file")
    result = run_cli(
        "train",
        "--train",
        fake,
        "--val",
        tiny_caches["val"],
        "--out",
        tmp_path / "run",
        "--device",
        "cpu",
    )
    assert_one_line_error(result, "fake.h5: not an HDF5 image cache")
    assert not (tmp_path / "run" / "model.pt").exists()
    _train(tiny_caches, tmp_path / "ok", TrainConfig(**TINY, epochs=1))
    from xiqa.data.cache import prepare_cache

    prepare_cache(tiny_caches["val"].with_suffix(".csv"), 48, tmp_path / "val48.h5", num_workers=1)
    result = run_cli(
        "predict",
        "--model",
        tmp_path / "ok" / "model.pt",
        "--images",
        tmp_path / "val48.h5",
        "--out",
        tmp_path / "p.csv",
        "--device",
        "cpu",
    )
    assert_one_line_error(result, "images are 48x48", "trained at 32x32")
    assert not (tmp_path / "p.csv").exists()
    result = run_cli(
        "predict",
        "--model",
        tiny_caches["val"],
        "--images",
        tiny_caches["val"],
        "--out",
        tmp_path / "p.csv",
        "--device",
        "cpu",
    )
    assert_one_line_error(result, "not a loadable xiqa checkpoint")
