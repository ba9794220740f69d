"""The optimizers of ``optimize`` beyond torch's: DeepDream's normalized step and the sign step of attacks."""
from __future__ import annotations

from typing import Iterable

import torch

__all__ = ["OPTIMIZERS", "NormalizedAscent", "SignDescent"]

OPTIMIZERS = ("adam", "sgd", "normalized", "sign")


class _StepRule(torch.optim.Optimizer):
    """An optimizer whose step is one rule per tensor, ``p <- p - lr * direction(grad)``."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float) -> None:
        super().__init__(params, {"lr": lr})

    @staticmethod
    def direction(g: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(self.direction(p.grad), alpha=-group["lr"])


class NormalizedAscent(_StepRule):
    """``p <- p - lr * grad / mean|grad|`` per image (DeepDream's normalized step; lesson 10).

    Every step moves each image by the same average amount, whatever the
    gradient's scale at that layer (the loop stores minus the ascent gradient
    in ``.grad``, so descending it ascends the score).
    """

    @staticmethod
    def direction(g: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, g.dim()))
        return g / (g.abs().mean(dim=dims, keepdim=True).clamp_min(1e-12) if dims else g.abs().clamp_min(1e-12))


class SignDescent(_StepRule):
    """``p <- p - lr * sign(grad)``: the fast gradient sign step (Goodfellow et al.; lesson 12)."""

    @staticmethod
    def direction(g: torch.Tensor) -> torch.Tensor:
        return torch.sign(g)


def _make_optimizer(optimizer, leaves: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if callable(optimizer) and not isinstance(optimizer, str):
        opt = optimizer(leaves)
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(f"optimizer(params) must return a torch.optim.Optimizer, got {type(opt).__name__}")
        return opt
    return {
        "adam": lambda: torch.optim.Adam(leaves, lr=lr),
        "sgd": lambda: torch.optim.SGD(leaves, lr=lr),
        "normalized": lambda: NormalizedAscent(leaves, lr=lr),
        "sign": lambda: SignDescent(leaves, lr=lr),
    }[optimizer]()
