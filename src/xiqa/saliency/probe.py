"""One probe for every gradient-based explainer: a single forward and a single backward pass.

Forward hooks on named modules capture their outputs; ``torch.autograd.grad`` then gives the
target logits' gradients with respect to exactly those tensors (or the input). The model's
parameters are swapped for detached copies for the duration of the pass (``functional_call``),
so no parameter gradient is ever computed, and every hook is removed before returning: the model
is left exactly as it was, mode included. ``forward`` is the gradient-free sibling the
perturbation methods use: evaluation mode, no autograd, the same capture of named outputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from xiqa.errors import InputError


@dataclass
class ProbeResult:
    logits: torch.Tensor  # (N, classes), detached
    activations: list[torch.Tensor]  # one (N, C, h, w) per probed layer, detached
    gradients: list[torch.Tensor]  # d(target logit)/d(activation), same shapes
    input_gradient: torch.Tensor | None  # d(target logit)/d(input) when asked for


def named_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (dotted, e.g. ``layer4.2``); an unknown name is an error
    that lists the blocks one can probe."""
    modules = dict(model.named_modules())
    if name not in modules or not name:
        blocks = [n for n in modules if n and n.count(".") <= 1]
        raise InputError(f"unknown layer {name!r}; valid layers include: {', '.join(blocks)}")
    return modules[name]


class _GuidedReLU(torch.autograd.Function):
    """Identity forward; backward passes only positive gradients. Placed after a ReLU, whose own
    backward masks negative inputs, it turns that ReLU into a guided one (Springenberg et al.)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0)


@contextlib.contextmanager
def _hooks(handles: list) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes.items():
            module.training = mode


def _capture(captured: dict[str, torch.Tensor], name: str, start_graph: bool):
    """A forward hook keeping ``name``'s output in ``captured`` (with ``start_graph``, as a new
    leaf that requires grad when it is the first one captured)."""

    def hook(module, inputs, output):
        if name in captured:
            raise InputError(
                f"layer {name!r} runs more than once per forward pass (a "
                "shared module such as a block's ReLU); probe its block"
            )
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output)
            raise InputError(
                f"layer {name!r} gives {shape}, not a feature map (N, C, h, w) that a layer's "
                "map (NormGrad's virtual layers, the CAMs) can be taken at"
            )
        if start_graph and not captured:
            output = output.detach().requires_grad_(True)  # the graph starts here
        captured[name] = output
        # Later in-place operations (torchvision's ReLU(inplace=True), residual +=) act on
        # the copy, so the captured tensor keeps the module's output and its gradient.
        return output.clone()

    return hook


def _block_without_residual(captured: dict[str, torch.Tensor], name: str, start_graph: bool):
    """A forward hook replacing a BasicBlock's output by bn2(conv2(relu(bn1(conv1(x))))): the
    block without its residual add and final ReLU, as the authors' Grad-CAM ran ResNet's last
    block (docs/protocol.md §6.4). The conv2 output is kept as the block's activation."""

    def hook(module, inputs, output):
        parts = ("conv1", "bn1", "relu", "conv2", "bn2")
        if not all(hasattr(module, part) for part in parts):
            raise InputError(
                f"layer {name!r} is not a ResNet BasicBlock (conv1, bn1, relu, conv2, bn2): "
                "the authors' Grad-CAM hook needs one"
            )
        inner = module.conv2(module.relu(module.bn1(module.conv1(inputs[0]))))
        if start_graph and not captured:
            inner = inner.detach().requires_grad_(True)  # the graph starts here
        captured[name] = inner
        return module.bn2(inner.clone())

    return hook


def target_score(logits: torch.Tensor, targets: torch.Tensor, rule: str = "given") -> torch.Tensor:
    """The scalar whose gradient every method explains, summed over the batch: each image's
    ``given`` target logit, its ``predicted`` (arg-max) logit, or the sum of all its logits
    (``logit-sum``: what the authors' Guided BP and Input × Gradient back-propagated,
    docs/protocol.md §6.1). Images are independent, so the sum over the batch gives each image
    its own gradient."""
    if rule == "logit-sum":
        return logits.sum()
    if rule == "predicted":
        targets = logits.argmax(1)
    elif rule != "given":
        raise ValueError(f"unknown target rule {rule!r}")
    # (clone: targets made under inference_mode cannot be saved for backward)
    return logits.gather(1, targets.reshape(-1, 1).to(logits.device).clone()).sum()


def _check_ran(layers: list[str] | tuple[str, ...], captured: dict[str, torch.Tensor]) -> None:
    missing = [name for name in layers if name not in captured]
    if missing:
        raise InputError(f"layers {missing} did not run in the forward pass")


def forward(
    model: nn.Module, images: torch.Tensor, layers: list[str] | tuple[str, ...] = ()
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One forward pass in evaluation mode without autograd: the logits (N, classes) and the
    outputs of the modules named in ``layers``. Hooks are removed and the mode restored."""
    modules = [named_module(model, name) for name in layers]  # all known before any hook
    captured: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(_capture(captured, name, start_graph=False))
        for name, module in zip(layers, modules, strict=True)
    ]
    with _hooks(handles), _eval_mode(model), torch.no_grad():
        logits = model(images)
    _check_ran(layers, captured)
    return logits, [captured[name] for name in layers]


def probe(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    layers: list[str] | tuple[str, ...] = (),
    input_gradient: bool = False,
    guided: str = "none",
    target: str = "given",
    without_residual: bool = False,
) -> ProbeResult:
    """Run ``model`` once forward and once backward on ``images`` (N, 3, H, W).

    Returns the outputs of the modules named in ``layers`` and the gradients of each image's
    target logit with respect to them (and to the input when ``input_gradient``); ``target``
    is the rule of :func:`target_score`. With ``guided="all"``, every ReLU passes only positive
    gradients back (guided backpropagation); with ``"stem"``, only the model's top-level ReLUs
    (a ResNet's stem ReLU, the only one the authors' code guided). With ``without_residual``,
    the (single) probed layer is a BasicBlock run without its residual add and final ReLU and
    its activation is its conv2 output (:func:`_block_without_residual`).
    The graph starts at the input when its gradient is wanted, otherwise at the first probed
    layer: nothing before it is recorded.
    """
    if not layers and not input_gradient:
        raise ValueError("probe needs layers or input_gradient")
    modules = [named_module(model, name) for name in layers]  # all known before any hook
    if without_residual and len(layers) != 1:
        raise ValueError("without_residual probes exactly one block")
    captured: dict[str, torch.Tensor] = {}
    make_hook = _block_without_residual if without_residual else _capture
    handles = [
        module.register_forward_hook(make_hook(captured, name, start_graph=not input_gradient))
        for name, module in zip(layers, modules, strict=True)
    ]
    if guided != "none":
        relus = [
            m
            for name, m in model.named_modules()
            if isinstance(m, nn.ReLU) and (guided == "all" or "." not in name)
        ]
        handles += [m.register_forward_hook(lambda m, i, o: _GuidedReLU.apply(o)) for m in relus]

    detached = {name: t.detach() for name, t in model.named_parameters()}
    detached.update(dict(model.named_buffers()))
    x = images.detach().requires_grad_(input_gradient)
    with _hooks(handles), _eval_mode(model), torch.enable_grad():
        logits = torch.func.functional_call(model, detached, (x,))
        _check_ran(layers, captured)
        score = target_score(logits, targets, target)
        wanted = [captured[name] for name in layers] + ([x] if input_gradient else [])
        grads = torch.autograd.grad(score, wanted)
    activations = [captured[name].detach() for name in layers]
    return ProbeResult(
        logits.detach(),
        activations,
        list(grads[: len(layers)]),
        grads[-1] if input_gradient else None,
    )
