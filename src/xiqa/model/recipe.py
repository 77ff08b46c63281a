"""The training recipe: one dataclass whose fields are the ``xiqa train`` options.

Each field's default, bounds and help live here only: the command line derives its options from
them, and a test holds the workflow schema's ``train`` section to them. This module imports no
torch, so the command line can build its options without it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from xiqa.errors import InputError

# The warm-up starts at this fraction of the learning rate (the authors' torchvision
# detection-reference code: warmup_factor = 1/1000).
WARMUP_START = 1e-3


def _option(
    default: Any,
    help: str | None = None,
    *,
    min: float | None = None,
    max: float | None = None,
    min_open: bool = False,
) -> Any:
    """A recipe field: its default, its bounds (``min_open``: the minimum itself is excluded) and
    the help of its command-line option."""
    bounds = {"min": min, "max": max, "min_open": min_open}
    return dataclasses.field(default=default, metadata={"help": help, **bounds})


@dataclass(frozen=True)
class TrainConfig:
    """The recipe. Defaults are the paper's (docs/protocol.md §2) but for epochs and batch size."""

    arch: str = _option("resnet34", "torchvision ResNet, DenseNet or EfficientNet name.")
    epochs: int = _option(5, min=1)
    batch_size: int = _option(32, min=1)
    lr: float = _option(0.01, min=0, min_open=True)
    momentum: float = _option(0.9, min=0, max=1)
    weight_decay: float = _option(5e-4, min=0)
    lr_step: int = _option(5, "Epochs between learning-rate decays by --lr-gamma.", min=1)
    lr_gamma: float = _option(0.1, min=0, max=1)
    warmup_iters: int = _option(
        1000,
        "Iterations of linear learning-rate warm-up, in the first epoch only (at most its "
        "iterations - 1); 0: none.",
        min=0,
    )
    augment: bool = _option(True, "The paper's flip, brightness/contrast jitter and affine warp.")
    pretrained: str = _option(
        "none", "none, imagenet (from the local torch cache) or a state-dict file."
    )
    seed: int = _option(0)

    def check(self) -> None:
        """Raise :class:`InputError` naming the first field outside its bounds."""
        for field in dataclasses.fields(self):
            value, bound = getattr(self, field.name), field.metadata
            if bound["min"] is not None and (
                value <= bound["min"] if bound["min_open"] else value < bound["min"]
            ):
                relation = ">" if bound["min_open"] else ">="
                raise InputError(f"training recipe: {field.name} must be {relation} {bound['min']}")
            if bound["max"] is not None and value > bound["max"]:
                raise InputError(f"training recipe: {field.name} must be <= {bound['max']}")

    def lr_at(self, step: int, epoch: int, steps_per_epoch: int) -> float:
        """Learning rate of iteration ``step`` (from 0) of a 0-based epoch of ``steps_per_epoch``.

        The authors' schedule (docs/protocol.md §2): the first epoch only warms up linearly, from
        WARMUP_START to 1 over W = min(warmup_iters, steps_per_epoch - 1) iterations; the rate is
        then multiplied by lr_gamma every lr_step epochs.
        """
        width = min(self.warmup_iters, steps_per_epoch - 1)
        warmup = 1.0
        if epoch == 0 and step < width:
            alpha = step / width
            warmup = WARMUP_START * (1 - alpha) + alpha
        return self.lr * warmup * self.lr_gamma ** (epoch // self.lr_step)
