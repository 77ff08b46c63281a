# Helpers shared by the rule files.

CACHED_SPLITS = ["train", "val", "test"]
FIGURES = [
    "examples",
    "failures",
    "misclassified",
    "pointing_accuracy",
    "roc",
    "pointing_curve",
    "sanity_randomisation",
]


wildcard_constraints:
    split="train|val|test",
    method="[a-z0-9][a-z0-9_.+-]*",
    shard="[0-9]+",
    model="[a-z0-9][a-z0-9_.+-]*",


# The study's models (xiqa.config.study_models: name -> recipe) and the methods each runs (those
# whose layers it can name). A config without a models section has one model whose outputs lie
# directly under results/; with one, model M's lie under results/models/M/ and every per-model
# rule's paths carry the {model} wildcard. The data (splits, caches) is shared.
from xiqa.config import DEFAULT_MODEL, model_methods, smooth_arguments, study_models

MODELS = study_models(config)
MODEL_METHODS = model_methods(config)
MULTI = "models" in config
ROOT = "results/models/{model}" if MULTI else "results"
MODEL_SUBCATEGORY = (
    "{model}" if MULTI else None
)  # the report's figures, grouped per model


def R(path):
    """A per-model output path: ``path`` under the model's results folder."""
    return f"{ROOT}/{path}"


def model_of(wildcards):
    """The job's model (the {model} wildcard; the one model without a models section)."""
    return wildcards.get("model", DEFAULT_MODEL)


def methods_of(wildcards):
    """The methods the job's model runs, in config order."""
    return MODEL_METHODS[model_of(wildcards)]


def per_model(pattern, methods=methods_of, **values):
    """An input function: ``pattern`` (a per-model path) expanded for the job's model, over the
    methods ``methods(wildcards)`` returns (by default the model's) and ``values``."""

    def inputs(wildcards):
        return expand(
            R(pattern), model=model_of(wildcards), method=methods(wildcards), **values
        )

    return inputs


def methods_json(methods=methods_of):
    """A params function: the config entries of ``methods(wildcards)`` as JSON, in order."""

    def entries(wildcards):
        return json.dumps({m: config["methods"][m] for m in methods(wildcards)})

    return entries


def each_model(targets):
    """``targets`` (per-model paths) for every model of the study."""
    return expand(targets, model=list(MODELS))


def dataset_root():
    """The Object-CXR root: the synthetic dataset this workflow makes, or the configured path."""
    if config["dataset"] == "synthetic":
        return "results/synthetic"
    return config["dataset"]


def train_options(wildcards):
    """The model's recipe (xiqa.config.study_models) as `xiqa train` options (quoted for the
    shell): each key is an option of the same name, a boolean its --key/--no-key flag. Sorted,
    so that the order of the keys in a config file does not count as a change of the recipe.
    """
    import shlex

    options = []
    for key, value in sorted(MODELS[model_of(wildcards)].items()):
        name = key.replace("_", "-")
        if isinstance(value, bool):
            options.append(f"--{name}" if value else f"--no-{name}")
        else:
            options.append(f"--{name} {shlex.quote(str(value))}")
    return " ".join(options)


def method_entry(wildcards):
    """One method's config entry as JSON (without the workflow's own `max_images`): a per-method
    rule sees only its own parameters, so adding or changing a method reruns that method alone.
    """
    import json

    entry = dict(config["methods"][wildcards.method])
    entry.pop("max_images", None)
    return json.dumps(entry, sort_keys=True)


def max_images_option(wildcards):
    """`--max-images K` for a method whose entry caps the images it explains, else nothing."""
    cap = config["methods"][wildcards.method].get("max_images")
    return f"--max-images {int(cap)}" if cap else ""


def sanity_stages_option():
    """`--stages` for xiqa sanity when the config lists stages; nothing for all of them."""
    import shlex

    stages = config["sanity"]["stages"]
    return "" if stages == "all" else f"--stages {shlex.quote(','.join(stages))}"


def audited_methods():
    """The config's methods the paper audit covers (none when it is off): those named as one of
    the paper's twelve whose entry has deviations of the authors' code to switch on."""
    if not config["audit"]["enabled"]:
        return []
    from xiqa.evaluation.tables import PAPER_TABLE
    from xiqa.saliency import audit_variants

    methods = config["methods"]
    return [m for m in methods if m in PAPER_TABLE and audit_variants(_entry(m))]


def audited_of(wildcards):
    """The audited methods the job's model runs."""
    return [m for m in methods_of(wildcards) if m in AUDITED]


def _entry(method):
    """A method's config entry without the workflow's own keys (`max_images`)."""
    entry = dict(config["methods"][method])
    entry.pop("max_images", None)
    return entry


def audit_variants_json(wildcards):
    """The audited method's variants (correct, each deviation, all) as JSON, in their order."""
    import json

    from xiqa.saliency import audit_variants

    return json.dumps(audit_variants(_entry(wildcards.method)))


def smooth_options():
    """`--smooth SIGMA[:KERNEL]` per smoothing of pointing.smoothing, shell-quoted."""
    import shlex

    return " ".join(f"--smooth {shlex.quote(t)}" for t in smooth_arguments(config))


def paper_option():
    """`--paper` when the config has the paper's setup (600 x 600, tau 25), else nothing."""
    paper = config["image_size"] == 600 and config["pointing"]["tau"] == 25
    return "--paper" if paper else ""


def froc_method_names():
    """The methods the FROC covers (xiqa.config.froc_methods: "all" means every method without
    max_images)."""
    from xiqa.config import froc_methods

    return froc_methods(config)


FROC_METHODS = froc_method_names()


def froc_of(wildcards):
    """The FROC methods the job's model runs."""
    return [m for m in methods_of(wildcards) if m in FROC_METHODS]


def all_images_option(wildcards):
    """`--all-images` for a method the FROC covers (it needs the negatives' maps too)."""
    return "--all-images" if wildcards.method in FROC_METHODS else ""


def method_shards(wildcards):
    """The saliency shards of one method and split of the job's model."""
    return expand(
        R("saliency/{method}/{split}/{shard}.h5"),
        model=model_of(wildcards),
        method=wildcards.method,
        split=wildcards.split,
        shard=range(config["n_shards"]),
    )


FAITHFULNESS = config["faithfulness"]["enabled"]


def faithfulness_options():
    """The faithfulness section as `xiqa faithfulness` options (quoted for the shell), sorted:
    `--max-images`, and each scoring key given (a list comma-separated); a key left out takes
    the command's default."""
    import shlex

    options = []
    for key, value in sorted(config["faithfulness"].items()):
        if key == "enabled":
            continue
        if isinstance(value, list):
            value = ",".join(map(str, value))
        options.append(f"--{key.replace('_', '-')} {shlex.quote(str(value))}")
    return " ".join(options)
