"""What a helper may change on a model, and how it is restored: ``frozen``, ``ModelSnapshot``, ``count_hooks``."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

__all__ = ["frozen", "count_hooks", "ModelSnapshot", "switch_off_inplace"]


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


@contextlib.contextmanager
def switch_off_inplace(modules: list[nn.Module]) -> Iterator[None]:
    """``inplace=False`` on every module of ``modules`` that has a bool ``inplace`` flag; restored on exit."""
    flags = [(m, m.inplace) for m in modules if isinstance(getattr(m, "inplace", None), bool)]
    try:
        for m, _ in flags:
            m.inplace = False
        yield
    finally:
        for m, f in flags:
            m.inplace = f
