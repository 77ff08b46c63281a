# xiqa: explainable image-quality analysis of chest X-rays.
# Run: snakemake --cores 2   (config.yaml: the synthetic demo)
#      snakemake --cores 8 --configfile config/paper.yaml   (the paper's setup, real Object-CXR)
import json
import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


# The main process checks the config (one line naming the bad key; Snakemake's own report spans
# many lines, and it does not know the methods), then fills the defaults. Without xiqa importable
# (Snakemake outside the package's environment), Snakemake's validation alone remains.
if workflow.is_main_process:
    try:
        from xiqa.config import check_config
        from xiqa.errors import InputError
    except ImportError:
        check_config = None
    if check_config is not None:
        try:
            check_config(
                config,
                os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml"),
            )
        except InputError as exc:
            sys.exit(f"xiqa: error: {exc}")
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
