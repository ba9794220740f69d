"""The objective algebra: what a forward pass produced (``Context``), ``Objective`` and its
``+ - * /``, and the small checks every score and penalty shares."""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch


@dataclass
class Context:
    """What one forward pass produced, as an objective sees it.

    ``image``: the rendered image ``(N,3,H,W)`` in [0,1] *before* the random
    transforms (penalties act on it); ``input``: what the model received
    (after transforms); ``logits``: ``(N, classes)`` or ``None`` when the
    forward pass was stopped early (no objective needed them);
    ``activations``: layer name -> tensor, for the declared layers only.
    """

    image: torch.Tensor
    input: torch.Tensor
    logits: torch.Tensor | None = None
    activations: dict[str, torch.Tensor] = field(default_factory=dict)

    def __getitem__(self, layer: str) -> torch.Tensor:
        if layer not in self.activations:
            raise KeyError(
                f"layer {layer!r} was not recorded in this forward pass; recorded: "
                f"{', '.join(self.activations) or 'none'} (an objective must declare the layers it reads)"
            )
        return self.activations[layer]


def _fmt(v: float) -> str:
    return f"{v:g}"


class Objective:
    """A score per image, ``(N,)``, to **maximize**; composes with ``+ - * /`` and numbers.

    ``fn(ctx: Context) -> Tensor (N,)``; ``layers``: the layer names it reads;
    ``needs_logits``: whether it reads the model's output. ``name`` is what
    ``repr`` shows. Penalties are objectives too (they return the penalty, ≥ 0):
    write ``score - lam * penalty``.
    """

    def __init__(self, fn: Callable[[Context], torch.Tensor], *, name: str, layers: Iterable[str] = (),
                 needs_logits: bool = False, atomic: bool = True) -> None:
        self.fn = fn
        self.name = name
        self.layers: tuple[str, ...] = tuple(dict.fromkeys(layers))
        self.needs_logits = needs_logits
        self._atomic = atomic  # for parentheses in repr

    def __call__(self, ctx: Context) -> torch.Tensor:
        out = self.fn(ctx)
        n = ctx.image.shape[0]
        if out.dim() == 0:
            out = out.expand(n)
        if out.shape != (n,):
            raise RuntimeError(f"objective {self!r} returned shape {tuple(out.shape)}, expected one score per image ({n},)")
        return out

    def __repr__(self) -> str:
        return self.name

    # --- composition -------------------------------------------------------------------
    def _wrap(self) -> str:
        return self.name if self._atomic else f"({self.name})"

    @staticmethod
    def _combine(a: "Objective", b: "Objective", op: str, f) -> "Objective":
        return Objective(lambda ctx: f(a(ctx), b(ctx)), name=f"{a.name if op in '+-' else a._wrap()} {op} "
                         f"{b._wrap() if op != '+' else b.name}", layers=a.layers + b.layers,
                         needs_logits=a.needs_logits or b.needs_logits, atomic=False)

    def _scaled(self, k: float, *, divide: bool = False) -> "Objective":
        if divide:
            if k == 0:
                raise ZeroDivisionError(f"cannot divide objective {self!r} by 0")
            return Objective(lambda ctx: self(ctx) / k, name=f"{self._wrap()}/{_fmt(k)}", layers=self.layers,
                             needs_logits=self.needs_logits)
        return Objective(lambda ctx: k * self(ctx), name=f"{_fmt(k)}*{self._wrap()}", layers=self.layers,
                         needs_logits=self.needs_logits)

    def _check(self, other, op: str):
        if isinstance(other, Objective) or (isinstance(other, numbers.Real) and not isinstance(other, bool)):
            return
        raise TypeError(f"cannot combine an Objective with {type(other).__name__} {other!r} using {op!r}: "
                        f"use another Objective or a number")

    def __add__(self, other):
        self._check(other, "+")
        if isinstance(other, Objective):
            return Objective._combine(self, other, "+", lambda a, b: a + b)
        return Objective(lambda ctx: self(ctx) + other, name=f"{self.name} + {_fmt(other)}", layers=self.layers,
                         needs_logits=self.needs_logits, atomic=False)

    def __radd__(self, other):
        return self.__add__(other)

    def __sub__(self, other):
        self._check(other, "-")
        if isinstance(other, Objective):
            return Objective._combine(self, other, "-", lambda a, b: a - b)
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    def __neg__(self):
        return Objective(lambda ctx: -self(ctx), name=f"-{self._wrap()}", layers=self.layers,
                         needs_logits=self.needs_logits)

    def __mul__(self, other):
        self._check(other, "*")
        if isinstance(other, Objective):
            return Objective._combine(self, other, "*", lambda a, b: a * b)
        return self._scaled(float(other))

    def __rmul__(self, other):
        return self.__mul__(other)

    def __truediv__(self, other):
        self._check(other, "/")
        if isinstance(other, Objective):
            return Objective._combine(self, other, "/", lambda a, b: a / b)
        return self._scaled(float(other), divide=True)


# ---------------------------------------------------------------- helpers

def _per_image(t: torch.Tensor) -> torch.Tensor:
    """Sum over everything but the batch dimension: (N, ...) -> (N,)."""
    return t.flatten(1).sum(1)


def _mean_per_image(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).mean(1)


def _check_layer(layer) -> str:
    if not isinstance(layer, str) or not layer:
        raise TypeError(f"a layer must be a non-empty name (alias or dotted name), got {layer!r}")
    return layer


def _check_index(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an integer, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    return int(value)


def _classes(c) -> int | torch.Tensor:
    """An int class index, or one index per image (list/tensor)."""
    if isinstance(c, str):
        from ..labels import class_index

        return class_index(c)
    if isinstance(c, numbers.Integral) and not isinstance(c, bool):
        return _check_index(c, "class index")
    if isinstance(c, (list, tuple, torch.Tensor)):
        idx = [(_classes(v) if not isinstance(v, torch.Tensor) else int(v)) for v in c]
        if not idx:
            raise ValueError("an empty list of classes: give one class index per image")
        return torch.tensor(idx, dtype=torch.long)
    raise TypeError(f"a class must be an index, a name or a list of them (one per image), got {type(c).__name__} {c!r}")


def _pick_class(scores: torch.Tensor, c: int | torch.Tensor, what: str) -> torch.Tensor:
    n, k = scores.shape
    if isinstance(c, int):
        if c >= k:
            raise IndexError(f"class index {c} is out of range: the model has classes 0..{k - 1}")
        return scores[:, c]
    if c.numel() != n:
        raise ValueError(f"{what} got {c.numel()} classes for a batch of {n} images: give one per image (or one int)")
    if int(c.max()) >= k:
        raise IndexError(f"class index {int(c.max())} is out of range: the model has classes 0..{k - 1}")
    return scores.gather(1, c.to(scores.device).view(-1, 1))[:, 0]


def _cname(c) -> str:
    return str(c) if isinstance(c, int) else str(c.tolist())
