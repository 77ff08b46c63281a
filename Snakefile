# xiqa: explainable image-quality analysis of chest X-rays.
# Run: snakemake --cores 2   (config.yaml: the synthetic demo)
#      snakemake --cores 8 --configfile config/paper.yaml   (the paper's setup, real Object-CXR)
import json
import os

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/saliency.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    default_target: True
    input:
        rules.aggregate.output,
