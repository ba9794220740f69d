"""The forward/backward engine of the gradient methods: taps on named layers, the functional-ReLU
check of the guided rules, and one forward + one backward pass (``_run``)."""
from __future__ import annotations

import contextlib
import weakref
from collections.abc import Mapping
from typing import Iterator

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .._checks import check_choice
from ..hooks import RELU_FAMILY, RELU_RULES, Capture, capture, frozen, module_hooks, relu_rule
from .._names import resolve_layers
from .._util import device_of
from .targets import Neuron, Target, _class_targets, _image, _select

__all__ = ["functional_relus"]


class _Taps:
    """The outputs (or inputs) of named layers during one forward, through ``hooks.capture``.

    ``taps``: key -> (layer name, ``"output"`` or ``"input"``); the names are
    resolved now, before anything runs. The recorded tensor is passed on as a
    copy (``protect=True``), so a later in-place operation (``out += identity``,
    an in-place ReLU) cannot change what we recorded or the gradient we take
    with respect to it. A reused module keeps its first call.
    """

    def __init__(self, model: nn.Module, taps: dict) -> None:
        self.model = model
        self.taps = dict(taps)
        if self.taps:
            resolve_layers(model, [name for name, _ in self.taps.values()])  # KeyError before any work
        self.rec: Capture | None = None

    @contextlib.contextmanager
    def active(self) -> Iterator[Mapping]:
        if not self.taps:
            yield {}
            return
        outs = list(dict.fromkeys(n for n, at in self.taps.values() if at == "output"))
        ins = list(dict.fromkeys(n for n, at in self.taps.values() if at == "input"))
        with capture(self.model, outs, inputs=ins, protect=True) as rec:
            self.rec = rec
            yield _TapValues(rec, self.taps)

    def check(self) -> None:
        if self.rec is not None:
            self.rec.check_called()


class _TapValues(Mapping):
    """key -> the tensor recorded for it (read from the capture after the forward pass)."""

    def __init__(self, rec: Capture, taps: dict) -> None:
        self.rec, self.taps = rec, taps

    def __getitem__(self, key) -> torch.Tensor:
        name, at = self.taps[key]
        return (self.rec.activations if at == "output" else self.rec.inputs)[name]

    def __iter__(self):
        return (k for k in self.taps if self._has(k))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _has(self, key) -> bool:
        name, at = self.taps[key]
        return name in (self.rec.activations if at == "output" else self.rec.inputs)

    def __contains__(self, key) -> bool:
        return key in self.taps and self._has(key)


# model -> (its modules when traced: (name, id, type) each, the calls); a swapped module re-traces
_FUNCTIONAL_RELUS: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, list[str]]]" = weakref.WeakKeyDictionary()
_RELU_FUNCS = {"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "threshold", "threshold_"}


class _CountRelu(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if self.depth == 0 and name in _RELU_FUNCS:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


def functional_relus(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of ReLU-like *functional* calls (``F.relu``, ``torch.relu``, ``F.relu6`` ...) made in
    ``model(x)`` outside ``nn.ReLU``/``nn.ReLU6`` modules: calls whose backward the guided and
    deconvnet rules cannot reach. Empty for the course's AlexNet, VGG, ResNet and EfficientNet;
    GoogLeNet (``F.relu`` in every ``BasicConv2d``) gives a long list. Traced once per model, and
    again after any of its modules is replaced.
    """
    structure = tuple((n, id(m), type(m)) for n, m in model.named_modules())
    cached = _FUNCTIONAL_RELUS.get(model)
    if cached is not None and cached[0] == structure:
        return list(cached[1])
    x = _image(x)
    mode = _CountRelu()

    def enter(mod, inp):
        mode.depth += 1

    def leave(mod, inp, out):
        mode.depth -= 1

    relus = [m for m in model.modules() if isinstance(m, RELU_FAMILY)]
    with module_hooks([(m, leave) for m in relus], pre=[(m, enter) for m in relus]):
        with frozen(model), torch.no_grad(), mode:
            model(x[:1].to(device_of(model)))
    _FUNCTIONAL_RELUS[model] = (structure, list(mode.calls))
    return list(mode.calls)


def _check_rule(model: nn.Module, x: torch.Tensor, rule: str) -> None:
    if rule == "gradient":
        return
    calls = functional_relus(model, x)
    if calls:
        kinds = ", ".join(sorted(set(calls)))
        raise ValueError(
            f"{rule} backprop cannot be applied to {getattr(model, 'name', type(model).__name__)!r}: its forward() "
            f"makes {len(calls)} functional ReLU call(s) ({kinds}) outside nn.ReLU/nn.ReLU6 modules, whose "
            f"backward would silently stay the plain gradient. Use a model built from nn.ReLU modules "
            f"(alexnet, vgg16, resnet18, efficientnet_lite0), or use rule='gradient'")


def _run(
    model: nn.Module,
    x: torch.Tensor,
    target: Target,
    *,
    rule: str = "gradient",
    taps: dict | None = None,
    wrt_input: bool = True,
) -> tuple[torch.Tensor | None, dict, dict, torch.Tensor]:
    """One forward + one backward. Returns (grad wrt x or None, activations, their gradients, logits).

    ``taps``: key -> (layer, at) of activations to record (and differentiate with respect to).
    Everything is validated before the model runs.
    """
    check_choice(rule, RELU_RULES, "rule")
    x = _image(x)
    classes = _class_targets(model, target, x.shape[0])
    if not (classes is not None or isinstance(target, Neuron) or callable(target)):
        raise TypeError(f"unsupported target {target!r}")
    taps = dict(taps or {})
    asked = list(taps)
    if isinstance(target, Neuron):
        taps[("neuron", target.layer, target.at)] = (target.layer, target.at)
    tapper = _Taps(model, taps)  # resolves every layer name (KeyError) before anything runs
    _check_rule(model, x, rule)
    dev = device_of(model)
    with relu_rule(model, rule), frozen(model), tapper.active() as acts:
        xg = x.detach().to(dev).requires_grad_(True)  # builds the graph; only what is asked is differentiated
        with torch.enable_grad():
            logits = model(xg)
            tapper.check()
            score = _select(target, classes, logits, acts).sum()
            keys = [k for k in asked if k in acts]
            inputs = ([xg] if wrt_input else []) + [acts[k] for k in keys]
            if not score.requires_grad:
                raise RuntimeError("the target score does not depend on the input: nothing to differentiate")
            grads = torch.autograd.grad(score, inputs, allow_unused=True)
    if wrt_input and grads[0] is None:
        raise RuntimeError("the target score does not depend on the input pixels: nothing to differentiate")
    gx = grads[0].to(x.device) if wrt_input else None
    gacts = dict(zip(keys, grads[1:] if wrt_input else grads))
    return gx, {k: acts[k].detach() for k in keys}, gacts, logits.detach()
