"""The workflow's configuration, checked once before any job runs: one line naming the bad key.

Snakemake's own schema validation reports an error over many lines (for an unknown key, the whole
configuration); this check reports the first problem as one line, fills in the schema's defaults
as Snakemake's would, and goes beyond the schema: every method must resolve to a registered
family with parameters it takes and layers the configured architecture has, and local paths must
exist.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import jsonschema
import yaml

from xiqa.errors import InputError

# Keys of a method's config entry that the workflow reads itself (not the family's parameters).
WORKFLOW_METHOD_KEYS = ("max_images",)


def check_config(config: dict[str, Any], schema_path: str | os.PathLike) -> None:
    """Raise :class:`InputError` naming the first bad key of a workflow ``config``; fill in the
    schema's defaults."""
    check_schema(config, schema_path)
    check_paths(config)
    arch = config["train"]["arch"]
    from xiqa.model.network import architectures

    if arch not in architectures():
        raise InputError(f"config key train.arch: unknown architecture {arch!r}")
    check_methods(config["methods"], arch)
    check_localisation(config)


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
    pretrained = str(config["train"]["pretrained"])
    if pretrained not in ("none", "imagenet") and not os.path.isfile(pretrained):
        raise InputError(f"config key train.pretrained: file {pretrained!r} not found")


def check_methods(methods: dict[str, dict[str, Any]], arch: str) -> None:
    """Each method entry resolves to a family, with parameters it takes, values they accept and
    layers ``arch`` has (aliases resolved), each giving a feature map (N, C, h, w); a bad
    value's error names its key (``methods.<name>.<parameter>``)."""
    import torch

    from xiqa.model.network import build_model
    from xiqa.saliency import FAMILIES, resolve_method
    from xiqa.saliency.registry import ParameterError

    model = None
    for method, entry in methods.items():
        try:
            entry = {k: v for k, v in entry.items() if k not in WORKFLOW_METHOD_KEYS}
            family, params = resolve_method(method, entry)
            if FAMILIES[family].takes_layers:
                if model is None:
                    with torch.device("meta"):  # the module tree only, no weights
                        model = build_model(arch)
                params = FAMILIES[family].resolve_layers(method, model, params)
                FAMILIES[family].check_feature_maps(method, model, params)
        except ParameterError as exc:
            raise InputError(f"config key methods.{method}.{exc.parameter}: {exc.reason}") from None
        except InputError as exc:
            raise InputError(f"config key methods.{method}: {exc}") from None
