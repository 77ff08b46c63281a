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


def dataset_root():
    """The Object-CXR root: the synthetic dataset this workflow makes, or the configured path."""
    if config["dataset"] == "synthetic":
        return "results/synthetic"
    return config["dataset"]


def train_options():
    """The train section of the config as `xiqa train` options (quoted for the shell)."""
    import shlex

    t = config["train"]
    options = [
        f"--arch {shlex.quote(t['arch'])}",
        f"--epochs {t['epochs']}",
        f"--batch-size {t['batch_size']}",
        f"--lr {t['lr']}",
        f"--momentum {t['momentum']}",
        f"--weight-decay {t['weight_decay']}",
        f"--lr-step {t['lr_step']}",
        f"--lr-gamma {t['lr_gamma']}",
        f"--warmup-iters {t['warmup_iters']}",
        "--augment" if t["augment"] else "--no-augment",
        f"--pretrained {shlex.quote(str(t['pretrained']))}",
        f"--seed {t['seed']}",
    ]
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
