"""The workflow config is validated once: xiqa's check fills in the schema's defaults exactly as
Snakemake's own validation would."""

from __future__ import annotations

import copy
import dataclasses
import re

import pytest
import yaml
from snakemake.utils import validate

from xiqa.config import DEFAULT_MODEL, check_config, check_schema, model_methods, study_models
from xiqa.errors import InputError
from xiqa.model.recipe import TrainConfig

from conftest import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def test_defaults_are_filled_as_snakemake_fills_them():
    demo = yaml.safe_load((REPO / "config.yaml").read_text())
    for config in ({}, {"train": {"epochs": 3}, "sanity": {"n_images": 2}}, demo):
        ours, snakemakes = copy.deepcopy(config), copy.deepcopy(config)
        check_schema(ours, SCHEMA)
        validate(snakemakes, str(SCHEMA))
        assert ours == snakemakes


def test_a_partial_config_gets_every_other_default():
    config = {"train": {"epochs": 3}}
    check_config(config, SCHEMA)
    assert config["dataset"] == "synthetic" and config["methods"] == {}
    assert config["synthetic"] == {"n_train": 1200, "n_dev": 300, "n_test": 300, "seed": 0}
    assert config["train"] == {"epochs": 3}  # the recipe's defaults are TrainConfig's
    assert config["sanity"]["stages"] == "all" and config["splits"] == ["val", "test"]
    (recipe,) = study_models(config).values()
    assert recipe == {**dataclasses.asdict(TrainConfig()), "epochs": 3}


def test_each_model_is_its_own_keys_over_the_train_section():
    config = {
        "train": {"epochs": 3, "lr": 0.02},
        "models": {"a": {"arch": "resnet18", "seed": 1}, "b": {"arch": "resnet34", "lr": 0.1}},
    }
    check_config(config, SCHEMA)
    models = study_models(config)
    defaults = dataclasses.asdict(TrainConfig())
    assert models["a"] == {**defaults, "epochs": 3, "lr": 0.02, "arch": "resnet18", "seed": 1}
    assert models["b"] == {**defaults, "epochs": 3, "lr": 0.1, "arch": "resnet34"}
    assert study_models({}) == {DEFAULT_MODEL: defaults}


def test_each_method_runs_on_every_model_whose_layers_it_names():
    methods = {
        "gradcam": {"family": "gradcam", "layer": "last"},
        "gradcam-l42": {"family": "gradcam", "layer": "layer4.2"},  # ResNet-34's last block
        "ig": {"family": "integrated-gradients"},
    }
    models = {
        "r18": {"arch": "resnet18"},
        "r34": {"arch": "resnet34"},
        "d": {"arch": "densenet121"},
    }
    config = {"methods": methods, "models": models}
    check_config(config, SCHEMA)
    assert model_methods(config) == {
        "r18": ["gradcam", "ig"],
        "r34": ["gradcam", "gradcam-l42", "ig"],
        "d": ["gradcam", "ig"],
    }
    # One model: a layer it lacks is an error, as it always was.
    single = {"methods": methods, "train": {"arch": "resnet18"}}
    with pytest.raises(
        InputError, match="config key methods.gradcam-l42.layer: unknown layer .layer4.2."
    ):
        check_config(single, SCHEMA)
    # Several: a method that no model can name is an error (a typo is not dropped silently).
    config = {"methods": {"x": {"family": "gradcam", "layer": "layer9.9"}}, "models": models}
    with pytest.raises(InputError, match="config key methods.x.layer: unknown layer .layer9.9."):
        check_config(config, SCHEMA)


def test_the_audit_is_off_by_default_and_its_switch_is_checked():
    config = {}
    check_schema(config, SCHEMA)
    assert config["audit"] == {"enabled": False}
    demo = yaml.safe_load((REPO / "config.yaml").read_text())
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    assert demo["audit"] == {"enabled": True} and paper["audit"] == {"enabled": False}
    for audit, message in (
        ({"enabled": "yes"}, "config key audit.enabled: 'yes' is not of type 'boolean'"),
        ({"enabled": True, "split": "val"}, "config key audit.split: unknown key"),
    ):
        with pytest.raises(InputError, match=re.escape(message)):
            check_schema({"audit": audit}, SCHEMA)


@pytest.mark.parametrize(
    "section, message",
    [
        ({"localisation": {"fraction": 0.33}}, "localisation.fraction: 0.33 is not one of"),
        (
            {"localisation": {"size_bounds": [0.02, 0.005]}},
            "localisation.size_bounds: 0.02 must be below 0.005",
        ),
        ({"froc": {"methods": ["nope"]}}, "froc.methods: 'nope' is not a configured method"),
        ({"froc": {"methods": ["capped"]}}, "froc.methods: 'capped' has max_images"),
        ({"froc": {"score": "logit"}}, "froc.score: 'logit' is not one of prob-x-relative"),
        ({"froc": {"top_k": 0}}, "froc.top_k: 0 is less than the minimum of 1"),
        ({"faithfulness": {"n_steps": 0}}, "faithfulness.n_steps: 0 is less than the minimum"),
        ({"faithfulness": {"max_images": 0}}, "faithfulness.max_images: 0 is less than"),
        ({"faithfulness": {"deletion_baseline": "mean"}}, "faithfulness.deletion_baseline: 'mean'"),
        ({"faithfulness": {"road_percentages": [0, 50]}}, "faithfulness.road_percentages.0: 0"),
        ({"faithfulness": {"road_percentages": [50, 100]}}, "faithfulness.road_percentages.1: 100"),
        ({"faithfulness": {"road_percentages": [50, 50]}}, "[50, 50] has non-unique"),
        ({"faithfulness": {"road_percentages": []}}, "faithfulness.road_percentages: [] should be"),
        ({"faithfulness": {"blur_sigma": 0}}, "faithfulness.blur_sigma: 0 is less than or equal"),
        ({"faithfulness": {"baseline_value": 2}}, "faithfulness.baseline_value: 2 is greater"),
        ({"faithfulness": {"road_noise": -1}}, "faithfulness.road_noise: -1 is less than"),
        ({"faithfulness": {"steps": 5}}, "faithfulness.steps: unknown key"),
    ],
)
def test_localisation_froc_and_faithfulness_sections_are_checked(section, message):
    config = {
        "methods": {
            "gc": {"family": "gradcam", "layer": "layer4.1"},
            "capped": {"family": "gradcam", "layer": "layer4.1", "max_images": 4},
        },
        "train": {"arch": "resnet18"},
        **section,
    }
    with pytest.raises(InputError, match=re.escape(message)):
        check_config(config, SCHEMA)


def test_froc_all_means_every_method_without_a_cap():
    from xiqa.config import froc_methods

    config = {
        "methods": {"a": {"family": "gradcam"}, "b": {"family": "rise", "max_images": 4}},
        "froc": {"methods": "all"},
    }
    check_schema(config, SCHEMA)
    assert froc_methods(config) == ["a"]
    assert config["localisation"] == {
        "enabled": True,
        "fraction": 0.5,
        "size_bounds": [0.002, 0.006],
    }


def test_the_faithfulness_section_holds_exactly_the_commands_parameters():
    """Its scoring keys are xiqa faithfulness's (score_maps' parameters, whose defaults they
    take when left out), plus the switch and the image cap; on by default."""
    import inspect

    from xiqa.evaluation.faithfulness import score_maps

    section = yaml.safe_load(SCHEMA.read_text())["properties"]["faithfulness"]["properties"]
    scoring = [
        name
        for name, p in inspect.signature(score_maps).parameters.items()
        if p.default is not inspect.Parameter.empty
    ]
    assert set(section) == {"enabled", "max_images", *scoring}
    assert all("default" not in section[name] for name in scoring)
    config = {}
    check_schema(config, SCHEMA)
    assert config["faithfulness"] == {"enabled": True}


@pytest.mark.parametrize(
    ("path", "arch", "last"),
    [
        ("config.yaml", "resnet18", "layer4.1"),
        (REPO / "config" / "paper.yaml", "resnet34", "layer4.2"),
    ],
)
def test_the_configs_aliases_resolve_to_the_layers_they_named_before(path, arch, last):
    """Each method entry's layers by alias resolve, for the config's architecture, to the
    modules the config named before it used aliases: results do not change."""
    import torch

    from xiqa.model.network import build_model
    from xiqa.saliency import FAMILIES, resolve_method

    config = yaml.safe_load((REPO / path).read_text())
    assert config["train"]["arch"] == arch
    with torch.device("meta"):
        model = build_model(arch)
    before = {
        "layer": last,
        "single": [last],
        "combined": ["layer2.0", "layer3.0", "layer4.0", last],
    }
    for name, entry in config["methods"].items():
        family, params = resolve_method(name, {k: v for k, v in entry.items() if k != "max_images"})
        if not FAMILIES[family].takes_layers:
            continue
        given = entry.get("layer", entry.get("layers"))
        assert given in ("last", ["last"], ["combined"]), name  # aliases only
        resolved = FAMILIES[family].resolve_layers(name, model, params)
        kind = "layer" if "layer" in resolved else name.rsplit("-", 1)[1]
        assert resolved.get("layer", resolved.get("layers")) == before[kind], name
