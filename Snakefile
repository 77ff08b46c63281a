# xiqa: explainable image-quality analysis of chest X-rays.
# Run: snakemake --cores 2   (config.yaml: the synthetic demo)
#      snakemake --cores 8 --configfile config/paper.yaml   (the paper's setup, real Object-CXR)
import json
import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")


# A file given with --configfile is the whole config: config.yaml is then not read, so that
# config/paper.yaml does not inherit the demo's methods and settings. Several files are merged in
# order (`--configfile config.yaml more.yaml` changes a few keys of the demo).
if not workflow.overwrite_configfiles:

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
include: "workflow/rules/consistency.smk"


rule all:
    default_target: True
    input:
        each_model(rules.aggregate.output),
        each_model(rules.audit_table.output) if AUDITED else [],
        each_model(rules.localisation_table.output)
        if config["localisation"]["enabled"]
        else [],
        each_model(rules.froc_table.output) if FROC_METHODS else [],
        each_model(rules.faithfulness_table.output) if FAITHFULNESS else [],
        rules.consistency.output if MULTI else [],
