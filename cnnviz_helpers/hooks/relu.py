"""``relu_rule``: the backward rule of every ReLU-family module, for guided backprop and deconvnet (lesson 06)."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from .._checks import check_choice
from ._register import module_hooks, tensor_hook
from .state import switch_off_inplace

__all__ = ["relu_rule", "RELU_RULES", "RELU_FAMILY"]

RELU_FAMILY = (nn.ReLU, nn.ReLU6)
RELU_RULES = ("gradient", "guided", "deconvnet")
_OTHER_ACTIVATIONS = (nn.SiLU, nn.GELU, nn.ELU, nn.LeakyReLU, nn.Hardswish, nn.Mish, nn.PReLU, nn.SELU, nn.Softplus)


class _Deconv(torch.autograd.Function):
    """Forward: the module's output. Backward: R_in = (R > 0)·R straight to the module's input
    (the forward activation is ignored: Zeiler & Fergus's deconvnet rule)."""

    @staticmethod
    def forward(ctx, inp, out):
        return out.clone()

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out.clamp(min=0), None


def _guided(mod, inp, out):
    # R -> (R > 0)·R on the output; the module's own backward then multiplies by its local
    # derivative (f > 0 for ReLU, 0 < x < 6 for ReLU6): (f>0)·(R>0)·R
    if out.requires_grad:
        tensor_hook(out, lambda g: g.clamp(min=0))


def _deconv(mod, inp, out):
    return _Deconv.apply(inp[0], out)


def _check_model(model: nn.Module, rule: str, relus: list[nn.Module]) -> None:
    others = sorted({type(m).__name__ for m in model.modules() if isinstance(m, _OTHER_ACTIVATIONS)})
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
    check_choice(rule, RELU_RULES, "rule")
    relus = [m for m in model.modules() if isinstance(m, RELU_FAMILY)]
    if rule != "gradient":
        _check_model(model, rule, relus)
    hook = {"gradient": None, "guided": _guided, "deconvnet": _deconv}[rule]
    with switch_off_inplace(relus), module_hooks([(m, hook) for m in relus] if hook else ()):
        yield len(relus)
