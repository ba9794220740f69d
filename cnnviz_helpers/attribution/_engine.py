"""The forward/backward engine of the gradient methods: taps on named layers, the functional-ReLU
check of the guided rules, and one forward + one backward pass (``_run``)."""
from __future__ import annotations

import contextlib
import weakref
from typing import Iterator

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..hooks import RELU_FAMILY, LayerNotCalledError, frozen, relu_rule
from .._names import resolve_layer
from .._util import device_of
from .targets import Neuron, Target, _class_targets, _image, _select

__all__ = ["functional_relus"]


class _Taps:
    """Record the output (or input) of named modules during one forward; first call of a reused module wins.

    The recorded tensor is passed on as a clone, so a later in-place operation
    (``out += identity``, an in-place ReLU) cannot change what we recorded or
    the gradient we take with respect to it.
    """

    def __init__(self, model: nn.Module, taps: dict) -> None:
        # taps: key -> (layer name, at); resolved now, before any hook exists
        self.model = model
        self.spec = {k: (name, at) + resolve_layer(model, name) for k, (name, at) in taps.items()}
        self.values: dict = {}
        self.handles: list = []

    @contextlib.contextmanager
    def active(self) -> Iterator[dict]:
        try:
            for key, (name, at, dotted, mod) in self.spec.items():
                if at == "output":
                    def hook(m, inp, out, key=key):
                        if key in self.values or not isinstance(out, torch.Tensor):
                            return None
                        self.values[key] = out
                        return out.clone()
                    self.handles.append(mod.register_forward_hook(hook))
                else:
                    def pre(m, inp, key=key):
                        if key in self.values or not inp or not isinstance(inp[0], torch.Tensor):
                            return None
                        self.values[key] = inp[0]
                        return (inp[0].clone(),) + tuple(inp[1:])
                    self.handles.append(mod.register_forward_pre_hook(pre))
            yield self.values
        finally:
            for h in self.handles:
                h.remove()
            self.handles.clear()

    def check(self) -> None:
        missing = [(n, d) for k, (n, at, d, _) in self.spec.items() if k not in self.values]
        if missing:
            raise LayerNotCalledError(
                f"layer(s) {', '.join(f'{n!r} ({d})' for n, d in missing)} never ran in forward() "
                f"(or gave no tensor): is this layer used in the model's forward()?")


_FUNCTIONAL_RELUS: "weakref.WeakKeyDictionary[nn.Module, list[str]]" = weakref.WeakKeyDictionary()
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
    GoogLeNet (``F.relu`` in every ``BasicConv2d``) gives a long list. Traced once per model.
    """
    if model in _FUNCTIONAL_RELUS:
        return list(_FUNCTIONAL_RELUS[model])
    x = _image(x)
    mode = _CountRelu()
    handles = []
    try:
        for m in model.modules():
            if isinstance(m, RELU_FAMILY):
                def pre(mod, inp):
                    mode.depth += 1

                def post(mod, inp, out):
                    mode.depth -= 1
                handles.append(m.register_forward_pre_hook(pre))
                handles.append(m.register_forward_hook(post))
        with frozen(model), torch.no_grad(), mode:
            model(x[:1].to(device_of(model)))
    finally:
        for h in handles:
            h.remove()
    _FUNCTIONAL_RELUS[model] = list(mode.calls)
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
    if rule not in ("gradient", "guided", "deconvnet"):
        raise ValueError(f"unknown rule {rule!r}: choose one of gradient, guided, deconvnet")
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
