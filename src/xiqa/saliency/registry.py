"""The registry of saliency families: one entry per family holds everything known of it.

An entry has the function that makes the maps, the label tables print, the kind the figures
group it by, and what each of its parameters accepts. Both the accepted values and the defaults
live only in the function's signature: each keyword parameter is annotated
``Annotated[type, Param]`` (e.g. ``n_masks: Count = 4000``), and the entry reads them from there.
Values are checked against the entry when a method is resolved, before any pass; layer names,
which need the model, by :meth:`Family.resolve_layers`, which also replaces the layer aliases
(``last``, ``combined``: :func:`xiqa.model.network.layer_aliases`) by the modules they name.
"""

from __future__ import annotations

import inspect
import math
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import torch
from torch import nn

from xiqa.errors import InputError
from xiqa.model.network import LAYER_ALIASES, layer_aliases
from xiqa.saliency.probe import forward, named_module

# (model, images, targets, **params) -> (maps (N, H, W), logits)
FamilyFunction = Callable[..., tuple[torch.Tensor, torch.Tensor]]
# What a family's maps are made from; the sanity figure has a panel per kind (CAMs together).
KINDS = ("normgrad", "cam", "gradient", "perturbation", "path")


class ParameterError(InputError):
    """A family parameter's bad value: ``parameter`` names it, ``reason`` says what is wrong."""

    def __init__(self, method: str, parameter: str, reason: str):
        super().__init__(f"method {method!r}: {reason}")
        self.parameter, self.reason = parameter, reason


class Param(ABC):
    """What one parameter accepts: the values :meth:`accepts` takes, in words ``requirement``."""

    requirement: str

    @abstractmethod
    def accepts(self, value: Any) -> bool: ...

    def complaint(self, family: Family, name: str, value: Any) -> str:
        return f"{family.name} parameter {name!r} must be {self.requirement}, not {value!r}"

    def layer_names(self, value: Any) -> list[str]:
        """The model layers the (accepted) value names; none for most parameters."""
        return []


@dataclass(frozen=True)
class Integer(Param):
    least: int

    @property
    def requirement(self) -> str:
        return f"an integer ≥ {self.least}"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= self.least


@dataclass(frozen=True)
class Number(Param):
    """A real number from ``least`` (excluded when ``open_least``) up to ``most``."""

    least: float
    most: float = math.inf
    open_least: bool = False
    noun: str = "a number"

    @property
    def requirement(self) -> str:
        if self.most == math.inf:
            return f"{self.noun} {'>' if self.open_least else '≥'} {self.least:g}"
        return f"{self.noun} in {'(' if self.open_least else '['}{self.least:g}, {self.most:g}]"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        above = value > self.least if self.open_least else value >= self.least
        return above and value <= self.most


@dataclass(frozen=True)
class Choice(Param):
    options: tuple[str, ...]

    @property
    def requirement(self) -> str:
        return f"{', '.join(self.options[:-1])} or {self.options[-1]}"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.options

    def complaint(self, family: Family, name: str, value: Any) -> str:
        return f"unknown {family.label} {name} {value!r}; choose {self.requirement}"


class LayerParam(Param):
    """A parameter naming model layers: module names or :data:`LAYER_ALIASES`."""

    several: bool  # a list of layers, not one

    def resolved(self, value: Any, names: list[str]) -> Any:
        """``value`` with its layers replaced by the concrete ``names`` they resolve to."""
        return type(value)(names) if self.several else names[0]


@dataclass(frozen=True)
class LayerName(LayerParam):
    requirement = "a layer name such as 'layer4.2' or 'last'"
    several = False

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and bool(value)

    def layer_names(self, value: Any) -> list[str]:
        return [value]


@dataclass(frozen=True)
class LayerNames(LayerParam):
    requirement = "a non-empty list of layer names"
    several = True

    def accepts(self, value: Any) -> bool:
        return (
            isinstance(value, (list, tuple))
            and bool(value)
            and all(isinstance(v, str) and v for v in value)
        )

    def layer_names(self, value: Any) -> list[str]:
        return list(value)


# Annotations of the parameters several families share.
Layer = Annotated[str, LayerName()]
Layers = Annotated[list[str] | tuple[str, ...], LayerNames()]
Count = Annotated[int, Integer(1)]  # of passes, masks, grid cells; a batch size
Seed = Annotated[int, Integer(0)]
# Whose logit is explained (xiqa.saliency.probe.target_score): "given" is correct.
Target = Annotated[str, Choice(("given", "predicted", "logit-sum"))]
# The authors' gradient-map scaling (xiqa.saliency.maps.percentile_clip): "none" is correct.
Clip = Annotated[str, Choice(("none", "p99"))]


@dataclass(frozen=True)
class Deviation:
    """One way the authors' MIDL 2021 code differs from the correct method: the parameter
    values that reproduce it and the step of their code it reproduces (docs/protocol.md §6)."""

    overrides: dict[str, Any]
    step: str


@dataclass(frozen=True)
class Family:
    """A registered family: its function, how tables and figures name and group it, and what
    each of its keyword parameters accepts."""

    name: str
    function: FamilyFunction
    label: str  # the method column of the tables
    kind: str  # one of KINDS
    params: dict[str, Param]
    # The authors' deviations, each switchable alone; all together make the midl2021 presets.
    deviations: dict[str, Deviation] = field(default_factory=dict)

    @property
    def defaults(self) -> dict[str, Any]:
        """Each parameter's default, from the function's signature (after model, images,
        targets)."""
        keywords = list(inspect.signature(self.function).parameters.values())[3:]
        return {p.name: p.default for p in keywords}

    def check(self, method: str, params: dict[str, Any]) -> None:
        """Every value in ``params`` (all of them parameters of this family) is accepted."""
        for name, value in params.items():
            if not self.params[name].accepts(value):
                reason = self.params[name].complaint(self, name, value)
                raise ParameterError(method, name, reason)

    def layer_names(self, params: dict[str, Any]) -> list[tuple[str, str]]:
        """(parameter, layer) for every model layer the checked ``params`` name."""
        return [
            (name, layer)
            for name, value in params.items()
            for layer in self.params[name].layer_names(value)
        ]

    @property
    def takes_layers(self) -> bool:
        return any(isinstance(spec, LayerParam) for spec in self.params.values())

    def resolve_layers(
        self, method: str, model: nn.Module, params: dict[str, Any]
    ) -> dict[str, Any]:
        """The checked ``params`` with every layer parameter, given or by its default, in
        module names of ``model``: each alias replaced by the modules it names there, each name
        a module of the model (concrete names stay as they are)."""
        resolved = dict(params)
        for name, spec in self.params.items():
            if not isinstance(spec, LayerParam):
                continue
            value = params.get(name, self.defaults[name])
            try:
                names = self._module_names(model, spec.layer_names(value), spec.several)
            except InputError as exc:
                raise ParameterError(method, name, str(exc)) from None
            resolved[name] = spec.resolved(value, names)
        return resolved

    @staticmethod
    def _module_names(model: nn.Module, layers: list[str], several: bool) -> list[str]:
        names = []
        for layer in layers:
            if layer in LAYER_ALIASES:
                names += layer_aliases(model)[layer]
                continue
            try:
                named_module(model, layer)
            except InputError as exc:
                raise InputError(f"{exc}; or an alias: {', '.join(LAYER_ALIASES)}") from None
            names.append(layer)
        if not several and len(names) != 1:
            raise InputError(
                f"{layers[0]!r} names {len(names)} layers ({', '.join(names)}): "
                "this parameter takes one"
            )
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise InputError(f"layer {twice[0]!r} is named more than once ({', '.join(layers)})")
        return names

    def check_feature_maps(
        self,
        method: str,
        model: nn.Module,
        params: dict[str, Any],
        size: int = 64,
        passed: set[str] | None = None,
    ) -> None:
        """Every layer the resolved ``params`` name gives a feature map (N, C, h, w) once per
        forward pass of a ``size`` × ``size`` input: a pass per layer, free on the meta device.
        Layers in ``passed`` are skipped, and each layer that passes is added to it (so a
        config's methods pay one pass per distinct layer)."""
        for name, layer in self.layer_names(params):
            if passed is not None and layer in passed:
                continue
            device = next(model.parameters()).device
            try:
                forward(model, torch.empty(1, 3, size, size, device=device), [layer])
            except InputError as exc:
                raise ParameterError(method, name, f"{self.label}: {exc}") from None
            if passed is not None:
                passed.add(layer)


FAMILIES: dict[str, Family] = {}


def parameter_specs(function: FamilyFunction) -> dict[str, Param]:
    """The :class:`Param` each keyword parameter of ``function`` is annotated with."""
    hints = typing.get_type_hints(function, include_extras=True)
    keywords = list(inspect.signature(function).parameters)[3:]
    return {name: hints[name].__metadata__[0] for name in keywords}


def register(
    name: str, label: str, kind: str, deviations: dict[str, Deviation] | None = None
) -> Callable[[FamilyFunction], FamilyFunction]:
    """Register the decorated function as the family ``name``."""

    def add(function: FamilyFunction) -> FamilyFunction:
        specs = parameter_specs(function)
        for deviation in (deviations or {}).values():
            for parameter, value in deviation.overrides.items():
                assert specs[parameter].accepts(value), (name, parameter, value)
        FAMILIES[name] = Family(name, function, label, kind, specs, dict(deviations or {}))
        return function

    return add
