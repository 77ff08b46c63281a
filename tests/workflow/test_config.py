"""The workflow config is validated once: xiqa's check fills in the schema's defaults exactly as
Snakemake's own validation would."""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from snakemake.utils import validate

from xiqa.config import check_config, check_schema
from xiqa.errors import InputError

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
    assert config["train"]["epochs"] == 3 and config["train"]["warmup_iters"] == 1000
    assert config["sanity"]["stages"] == "all" and config["splits"] == ["val", "test"]


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
