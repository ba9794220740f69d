"""One owner for every hook and every temporary change to a model.

- ``frozen(model)``: eval mode, parameters frozen (``requires_grad=False``) for
  the duration; on exit (normal, error or Ctrl-C) ``model.training`` of every
  module, every ``requires_grad`` and every ``.grad`` are exactly as before.
- ``capture(model, layers, gradients=False)``: records activations (and their
  gradients, through tensor hooks) of named layers; no hook outlives the block.
- ``relu_rule(model, rule)``: backward rule of every ReLU-family module for
  guided backprop / deconvnet (lesson 06); ``inplace`` flags restored on exit.
- ``ModelSnapshot``: a record of all of the above, to compare before/after (tests).

Introduced in lesson 03; every helper that runs a model goes through here.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch
from torch import nn

from ._names import resolve_layers

__all__ = [
    "frozen",
    "capture",
    "Capture",
    "relu_rule",
    "RELU_RULES",
    "RELU_FAMILY",
    "count_hooks",
    "ModelSnapshot",
    "LayerNotCalledError",
]

RELU_FAMILY = (nn.ReLU, nn.ReLU6)
RELU_RULES = ("gradient", "guided", "deconvnet")


class LayerNotCalledError(RuntimeError):
    """A hooked layer never ran during the forward pass."""


def count_hooks(model: nn.Module) -> int:
    """Number of forward, pre-forward and backward hooks on all modules of ``model``."""
    n = 0
    for m in model.modules():
        n += len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        n += len(getattr(m, "_backward_pre_hooks", {}))
    return n


@dataclass
class ModelSnapshot:
    """Everything a helper may touch: training flags, requires_grad, .grad, inplace flags, hooks."""

    training: dict[str, bool]
    requires_grad: dict[str, bool]
    grads: dict[str, torch.Tensor | None]
    inplace: dict[str, bool]
    hooks: int
    params: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)

    @classmethod
    def take(cls, model: nn.Module, *, with_params: bool = False) -> "ModelSnapshot":
        return cls(
            training={n: m.training for n, m in model.named_modules()},
            requires_grad={n: p.requires_grad for n, p in model.named_parameters()},
            grads={n: (None if p.grad is None else p.grad.detach().clone()) for n, p in model.named_parameters()},
            inplace={n: m.inplace for n, m in model.named_modules() if hasattr(m, "inplace")},
            hooks=count_hooks(model),
            params={n: p.detach().clone() for n, p in model.named_parameters()} if with_params else {},
        )

    def differences(self, other: "ModelSnapshot") -> list[str]:
        """Human-readable list of what changed between two snapshots (empty: nothing)."""
        out = []
        for key in ("training", "requires_grad", "inplace"):
            a, b = getattr(self, key), getattr(other, key)
            for n in a:
                if a[n] != b.get(n):
                    out.append(f"{key}[{n or '<root>'}]: {a[n]} -> {b.get(n)}")
        for n, g in self.grads.items():
            h = other.grads.get(n)
            if (g is None) != (h is None) or (g is not None and not torch.equal(g, h)):
                out.append(f"grad[{n}] changed")
        if self.hooks != other.hooks:
            out.append(f"hooks: {self.hooks} -> {other.hooks}")
        for n, p in self.params.items():
            if n in other.params and not torch.equal(p, other.params[n]):
                out.append(f"param[{n}] changed")
        return out


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters for the duration; everything restored in ``finally``.

    ``.grad`` is never touched: the course computes gradients with
    ``torch.autograd.grad`` with respect to inputs only.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    training = [(m, m.training) for m in model.modules()]
    req = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in req:
            p.requires_grad_(False)
        yield model
    finally:
        for m, t in training:
            m.training = t
        for p, r in req:
            p.requires_grad_(r)


class Capture:
    """What ``capture`` recorded: ``activations[name]`` and ``gradients[name]`` (keys as asked).

    A layer that runs several times in one forward keeps its first output.
    Tensors are not detached: an activation can be the target of
    ``torch.autograd.grad`` (e.g. a neuron's score).
    """

    def __init__(self, names: list[str], dotted: dict[str, str]) -> None:
        self.names = names
        self.dotted = dotted
        self.activations: dict[str, torch.Tensor] = {}
        self.gradients: dict[str, torch.Tensor] = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.activations:
            if name in self.names:
                raise LayerNotCalledError(
                    f"layer {name!r} ({self.dotted[name]}) has no recorded activation: run the model inside "
                    f"the `with capture(...)` block (is this layer used in forward()?)"
                )
            raise KeyError(f"{name!r} was not captured; captured layers: {', '.join(self.names)}")
        return self.activations[name]

    def check_called(self) -> None:
        missing = [n for n in self.names if n not in self.activations]
        if missing:
            raise LayerNotCalledError(
                f"layer(s) {', '.join(repr(m) + ' (' + self.dotted[m] + ')' for m in missing)} never ran in "
                f"forward(): is this layer used in the model's forward()?"
            )


@contextlib.contextmanager
def capture(
    model: nn.Module,
    layers: str | Iterable[str],
    *,
    gradients: bool = False,
    detach: bool = False,
) -> Iterator[Capture]:
    """Record the outputs (and, with ``gradients=True``, their gradients) of named layers.

    The model is ``frozen`` (eval, parameters frozen) for the block; hooks are
    removed and every flag restored on exit, also on error or Ctrl-C. Names are
    validated before any hook is registered.

    >>> with capture(model, ["block2", "block4"]) as rec:
    ...     model(x)
    >>> rec["block2"].shape          # (N, C, H, W)
    """
    resolved = resolve_layers(model, layers)
    names = list(resolved)
    rec = Capture(names, {n: d for n, (d, _) in resolved.items()})
    handles: list = []
    by_module: dict[int, list[str]] = {}
    for n, (_, m) in resolved.items():
        by_module.setdefault(id(m), []).append(n)
    inplace = [(m, m.inplace) for m in model.modules() if isinstance(getattr(m, "inplace", None), bool)]
    with frozen(model):
        try:
            # an in-place activation after a hooked layer would overwrite the recorded output
            for m, _ in inplace:
                m.inplace = False
            for n, (_, m) in resolved.items():
                if n != by_module[id(m)][0]:
                    continue  # one hook per module, fanned out to every name that points at it
                keys = by_module[id(m)]

                def fwd(mod, inp, out, keys=keys):
                    t = out if isinstance(out, torch.Tensor) else out[0]
                    if keys[0] in rec.activations:
                        return
                    for k in keys:
                        rec.activations[k] = t.detach() if detach else t
                    if gradients and t.requires_grad:
                        def save(g, keys=keys):
                            for k in keys:
                                rec.gradients[k] = g.detach()
                        t.register_hook(save)  # tensor hook: dies with the graph

                handles.append(m.register_forward_hook(fwd))
            yield rec
        finally:
            for h in handles:
                h.remove()
            for m, f in inplace:
                m.inplace = f


class _RuleFn(torch.autograd.Function):
    """Identity on the module's output; backward applies a guided/deconvnet rule to reach its input."""

    @staticmethod
    def forward(ctx, inp, out, rule: str, upper: float | None):
        ctx.rule, ctx.upper = rule, upper
        ctx.save_for_backward(inp)
        return out.clone()

    @staticmethod
    def backward(ctx, grad_out):
        (inp,) = ctx.saved_tensors
        pos = grad_out.clamp(min=0)
        if ctx.rule == "deconvnet":
            g = pos  # R_in = (R > 0) * R: the forward activation is ignored
        else:  # guided: (f > 0) * (R > 0) * R; for ReLU6 the local derivative is 0 < x < 6
            mask = inp > 0
            if ctx.upper is not None:
                mask = mask & (inp < ctx.upper)
            g = pos * mask
        return g, None, None, None


@contextlib.contextmanager
def relu_rule(model: nn.Module, rule: str) -> Iterator[int]:
    """Replace the backward rule of every ``nn.ReLU``/``nn.ReLU6`` module for the block.

    ``rule``: ``"gradient"`` (the ordinary backward, R_in = (f>0)·R),
    ``"guided"`` (R_in = (f>0)·(R>0)·R) or ``"deconvnet"`` (R_in = (R>0)·R).
    Yields the number of modules overridden. ``inplace`` flags are switched off
    for the block and restored. Raises ``ValueError`` if the model has no
    ReLU-family module, or if it has activation modules of another kind
    (SiLU, GELU, ...) whose rule is undefined: a guided map that silently
    equals the plain gradient is worse than an error. Functional ``F.relu``
    calls inside ``forward`` cannot be seen; ``tests`` check that the two
    rules differ from the plain gradient on every course model.
    """
    if rule not in RELU_RULES:
        raise ValueError(f"unknown rule {rule!r}: choose one of {', '.join(RELU_RULES)}")
    relus = [m for m in model.modules() if isinstance(m, RELU_FAMILY)]
    others = sorted({type(m).__name__ for m in model.modules()
                     if isinstance(m, (nn.SiLU, nn.GELU, nn.ELU, nn.LeakyReLU, nn.Hardswish, nn.Mish, nn.PReLU, nn.SELU, nn.Softplus))})
    if rule != "gradient":
        if others:
            raise ValueError(
                f"{rule} backprop is defined for ReLU and ReLU6 only, but the model also has {', '.join(others)} "
                f"activation modules; their backward would stay the plain gradient"
            )
        if not relus:
            raise ValueError(
                f"{rule} backprop needs nn.ReLU or nn.ReLU6 modules, and {type(model).__name__} has none "
                f"(if it calls F.relu inside forward(), the rule cannot be applied: use ReLU modules)"
            )
    inplace = [(m, m.inplace) for m in relus]
    handles = []
    try:
        for m, _ in inplace:
            m.inplace = False
        if rule == "guided":
            # R -> (R > 0) * R on the output; the module's own backward then multiplies by
            # its local derivative (f > 0 for ReLU, 0 < x < 6 for ReLU6): (f>0)·(R>0)·R
            def fwd_guided(mod, inp, out):
                if out.requires_grad:
                    out.register_hook(lambda g: g.clamp(min=0))

            for m in relus:
                handles.append(m.register_forward_hook(fwd_guided))
        elif rule == "deconvnet":
            for m in relus:
                upper = 6.0 if isinstance(m, nn.ReLU6) else None

                def fwd(mod, inp, out, upper=upper):
                    return _RuleFn.apply(inp[0], out, rule, upper)

                handles.append(m.register_forward_hook(fwd))
        yield len(relus)
    finally:
        for h in handles:
            h.remove()
        for m, f in inplace:
            m.inplace = f
