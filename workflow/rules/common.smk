# Helpers shared by the rule files.

CACHED_SPLITS = ["train", "val", "test"]


wildcard_constraints:
    split="train|val|test",


def dataset_root():
    """The Object-CXR root: the synthetic dataset this workflow makes, or the configured path."""
    if config["dataset"] == "synthetic":
        return "results/synthetic"
    return config["dataset"]
