# xiqa: explainable image-quality analysis of chest X-rays.
# Run: snakemake --cores 2   (config.yaml: the synthetic demo)
#      snakemake --cores 8 --configfile config/paper.yaml   (the paper's setup, real Object-CXR)
import json
import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


# The config is validated once, and its defaults filled in. With xiqa importable, the main process
# checks it all (one line naming the bad key, where Snakemake's report spans many lines; and the
# methods, which Snakemake does not know), a job's process (on a cluster) only the schema.
# Without xiqa (Snakemake outside the package's environment), Snakemake's validation does it.
SCHEMA = os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml")
try:
    from xiqa.config import check_config, check_schema
    from xiqa.errors import InputError
except ImportError:
    validate(config, SCHEMA)
else:
    try:
        (check_config if workflow.is_main_process else check_schema)(config, SCHEMA)
    except InputError as exc:
        sys.exit(f"xiqa: error: {exc}")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/saliency.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    default_target: True
    input:
        rules.aggregate.output,
        rules.audit_table.output if AUDITED else [],
        rules.localisation_table.output if config["localisation"]["enabled"] else [],
        rules.froc_table.output if FROC_METHODS else [],
        rules.faithfulness_table.output if FAITHFULNESS else [],
