"""The workflow's configuration, checked once before any job runs: one line naming the bad key.

Snakemake's own schema validation reports an error over many lines (for an unknown key, the whole
configuration); this check reports the first problem as one line, fills in the schema's defaults
as Snakemake's would, and goes beyond the schema: every method must resolve to a registered
family with parameters it takes and layers the configured architecture has, and local paths must
exist.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from typing import Any

import jsonschema
import yaml

from xiqa.errors import InputError

# Keys of a method's config entry that the workflow reads itself (not the family's parameters).
WORKFLOW_METHOD_KEYS = ("max_images",)
# The name of a study's one model when its config has no models section (its outputs stay
# directly under results/, as before there were several).
DEFAULT_MODEL = "model"


def check_config(config: dict[str, Any], schema_path: str | os.PathLike) -> None:
    """Raise :class:`InputError` naming the first bad key of a workflow ``config``; fill in the
    schema's defaults."""
    check_schema(config, schema_path)
    check_models(config)
    check_paths(config)
    model_methods(config, check=True)
    check_localisation(config)
    smooth_arguments(config)


def study_models(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The study's models, name -> recipe: every field of :class:`TrainConfig` at its default,
    overridden by the ``train`` section, then by the model's own keys in ``models``. A config
    without a ``models`` section has one model, :data:`DEFAULT_MODEL`."""
    from xiqa.model.recipe import TrainConfig

    shared = {**dataclasses.asdict(TrainConfig()), **config.get("train", {})}
    models = config.get("models") or {DEFAULT_MODEL: {}}
    return {name: {**shared, **overrides} for name, overrides in models.items()}


def model_key(config: dict[str, Any], model: str, key: str) -> str:
    """The config key that sets ``key`` of ``model``'s recipe (for error messages)."""
    if key in (config.get("models") or {}).get(model, {}):
        return f"models.{model}.{key}"
    return f"train.{key}"


def check_models(config: dict[str, Any]) -> None:
    """Every model's architecture is one xiqa can build (the schema holds the recipe's bounds)."""
    from xiqa.model.network import architectures

    known = architectures()
    for name, recipe in study_models(config).items():
        if recipe["arch"] not in known:
            key = model_key(config, name, "arch")
            raise InputError(f"config key {key}: unknown architecture {recipe['arch']!r}")


def model_methods(config: dict[str, Any], check: bool = False) -> dict[str, list[str]]:
    """Model name -> the config's methods that run on it: with one model, every method (``check``:
    each must resolve on its architecture, else the error names the key); with several, each
    method on every model whose layers it can name, and a method that no model can name is an
    error (``check`` or not: the workflow would drop it silently). ``check`` also holds the
    sanity section's stages to every model."""
    models = study_models(config)
    archs = sorted({recipe["arch"] for recipe in models.values()})
    methods = config["methods"]
    if "models" not in config and not check:
        return {name: list(methods) for name in models}
    errors = {arch: method_errors(methods, arch) for arch in archs}
    for method in methods:
        failed = [errors[arch][method] for arch in archs if method in errors[arch]]
        if len(failed) == len(archs) or failed and "models" not in config:
            raise failed[0]
    if check:
        for arch in archs:
            check_sanity_stages(config, arch)
    return {
        name: [m for m in methods if m not in errors[recipe["arch"]]]
        for name, recipe in models.items()
    }


def check_sanity_stages(config: dict[str, Any], arch: str) -> None:
    """The sanity section's stages (when it lists them) are stages of ``arch``."""
    import torch

    from xiqa.evaluation.sanity import checked_stages
    from xiqa.model.network import build_model

    stages = config["sanity"]["stages"]
    if stages == "all":
        return
    with torch.device("meta"):
        model = build_model(arch)
    try:
        checked_stages(model, stages)
    except InputError as exc:
        raise InputError(f"config key sanity.stages: {exc} ({arch})") from None


def smooth_arguments(config: dict[str, Any]) -> list[str]:
    """The ``--smooth`` values of ``pointing.smoothing`` (SIGMA or SIGMA:KERNEL), checked as
    xiqa pointing checks them; a bad one is one error naming its key."""
    from xiqa.evaluation.pointing import Smoothing

    texts, seen = [], {}
    for i, entry in enumerate(config["pointing"]["smoothing"]):
        text = f"{entry['sigma']}" + (f":{entry['kernel']}" if "kernel" in entry else "")
        key = f"config key pointing.smoothing.{i}"
        try:
            suffix = Smoothing.parse(text).suffix
        except InputError as exc:
            raise InputError(f"{key}: {str(exc).split(': ', 1)[1]}") from None
        if suffix in seen:
            raise InputError(f"{key}: the same smoothing ({suffix}) as entry {seen[suffix]}")
        seen[suffix] = i
        texts.append(text)
    return texts


def froc_methods(config: dict[str, Any]) -> list[str]:
    """The methods the FROC covers (``froc.methods``: "all" is every method without
    ``max_images``, which FROC cannot use: it needs every image of a split)."""
    listed = config["froc"]["methods"]
    methods = config["methods"]
    if listed == "all":
        return [m for m in methods if "max_images" not in methods[m]]
    return list(listed)


def check_localisation(config: dict[str, Any]) -> None:
    """The localisation and FROC sections: a fraction on the per-image grid, increasing size
    bounds, FROC methods that exist and explain every image, a known score rule."""
    from xiqa.evaluation.froc import SCORE_RULES
    from xiqa.evaluation.localisation import DEFAULT_FRACTIONS

    section = config["localisation"]
    if section["fraction"] not in DEFAULT_FRACTIONS:
        raise InputError(
            f"config key localisation.fraction: {section['fraction']:g} is not one of "
            f"{', '.join(f'{f:g}' for f in DEFAULT_FRACTIONS)}"
        )
    low, high = section["size_bounds"]
    if not low < high:
        raise InputError(
            f"config key localisation.size_bounds: {low:g} must be below {high:g} "
            "(small/medium, then medium/large)"
        )
    for method in froc_methods(config):
        if method not in config["methods"]:
            raise InputError(f"config key froc.methods: {method!r} is not a configured method")
        if "max_images" in config["methods"][method]:
            raise InputError(
                f"config key froc.methods: {method!r} has max_images; the FROC needs a map of "
                "every image of a split"
            )
    if config["froc"]["score"] not in SCORE_RULES:
        raise InputError(
            f"config key froc.score: {config['froc']['score']!r} is not one of "
            f"{', '.join(SCORE_RULES)}"
        )


def check_schema(config: dict[str, Any], schema_path: str | os.PathLike) -> None:
    """Raise :class:`InputError` naming the first key of ``config`` the schema rejects; then set
    every absent key that has a default in the schema, as Snakemake's ``validate`` does."""
    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    # One pass: the validator fills in the defaults as it goes (they are valid by the schema).
    validator = _filling_defaults(jsonschema.validators.validator_for(schema))(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        where = [str(p) for p in error.absolute_path]
        message = error.message.replace("\n", " ")
        if error.validator == "additionalProperties":  # name the unknown key itself
            known = set(error.schema.get("properties", {}))
            where.append(sorted(set(error.instance) - known)[0])
            message = f"unknown key (valid here: {', '.join(sorted(known))})"
        where = ".".join(where) or "(top level)"
        if len(message) > 200:
            message = message[:200] + "..."
        raise InputError(f"config key {where}: {message}")


def _filling_defaults(validator_class: type) -> type:
    """``validator_class`` extended to set absent properties to their schema default on the way
    down (jsonschema's FAQ recipe, which Snakemake's ``validate`` uses), so nested sections get
    theirs too."""
    properties = validator_class.VALIDATORS["properties"]

    def fill(validator, subschemas, instance, schema):
        if validator.is_type(instance, "object"):
            for name, subschema in subschemas.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from properties(validator, subschemas, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": fill})


def check_paths(config: dict[str, Any]) -> None:
    """The dataset folder and a pretrained-weights file, when given as paths, must exist (in a
    config whose defaults are filled in)."""
    dataset = config["dataset"]
    if dataset != "synthetic" and not os.path.isdir(dataset):
        raise InputError(f"config key dataset: folder {dataset!r} not found")
    for name, recipe in study_models(config).items():
        pretrained = str(recipe["pretrained"])
        if pretrained not in ("none", "imagenet") and not os.path.isfile(pretrained):
            key = model_key(config, name, "pretrained")
            raise InputError(f"config key {key}: file {pretrained!r} not found")


def check_methods(methods: dict[str, dict[str, Any]], arch: str) -> None:
    """Each method entry resolves to a family, with parameters it takes, values they accept and
    layers ``arch`` has (aliases resolved), each giving a feature map (N, C, h, w); a bad
    value's error names its key (``methods.<name>.<parameter>``)."""
    for error in method_errors(methods, arch).values():
        raise error


def method_errors(methods: dict[str, dict[str, Any]], arch: str) -> dict[str, InputError]:
    """Method name -> why its entry does not resolve on ``arch`` (see :func:`check_methods`),
    for each method that does not. Memoised: the workflow asks once to check the config and
    again to plan each model's jobs, and the probe's forward passes dominate a DAG's build."""
    key = (arch, json.dumps(methods, sort_keys=True, default=str))
    if key not in _METHOD_ERRORS:
        _METHOD_ERRORS[key] = _method_errors(methods, arch)
    return dict(_METHOD_ERRORS[key])


_METHOD_ERRORS: dict[tuple[str, str], dict[str, InputError]] = {}


def _method_errors(methods: dict[str, dict[str, Any]], arch: str) -> dict[str, InputError]:
    import torch

    from xiqa.model.network import build_model
    from xiqa.saliency import FAMILIES, resolve_method
    from xiqa.saliency.registry import ParameterError

    model, errors, passed = None, {}, set()
    for method, entry in methods.items():
        try:
            entry = {k: v for k, v in entry.items() if k not in WORKFLOW_METHOD_KEYS}
            family, params = resolve_method(method, entry)
            if FAMILIES[family].takes_layers:
                if model is None:
                    with torch.device("meta"):  # the module tree only, no weights
                        model = build_model(arch)
                params = FAMILIES[family].resolve_layers(method, model, params)
                FAMILIES[family].check_feature_maps(method, model, params, passed=passed)
        except ParameterError as exc:
            reason = f"methods.{method}.{exc.parameter}: {exc.reason}"
            errors[method] = InputError(f"config key {reason}")
        except InputError as exc:
            errors[method] = InputError(f"config key methods.{method}: {exc}")
    return errors
