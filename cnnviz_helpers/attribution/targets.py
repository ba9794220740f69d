"""Targets: which score to explain (a class, a class name, a ``Neuron``, a callable), and the image check.

Introduced in lesson 05; every attribution helper validates its target here before any work.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch
from torch import nn

from .._checks import check_index, check_int
from ..hooks import frozen
from ..images import check_image
from .._util import device_of

__all__ = ["Channel", "Neuron", "Target", "class_scores"]


@dataclass(frozen=True)
class Neuron:
    """The score of one unit of a feature map: ``act[n, channel, i, j]`` of ``layer``'s output.

    ``position=(i, j)`` picks one unit (row i, column j of the map); ``position=None`` is the
    unit at the centre, ``(H//2, W//2)``, as in ``objectives.neuron``. A whole channel's score
    is ``Channel(layer, channel)``, the mean of its map.
    ``at="input"`` reads the layer's input instead of its output.

    >>> gradient(model, x, Neuron("block4", channel=12, position=(7, 3)))
    """

    layer: str
    channel: int
    position: tuple[int, int] | None = None
    at: str = "output"

    def __post_init__(self) -> None:
        if not isinstance(self.layer, str):
            raise TypeError(f"Neuron.layer must be a layer name (str), got {type(self.layer).__name__}")
        object.__setattr__(self, "channel", check_int(self.channel, "Neuron.channel", lo=0))
        if self.position is not None:
            p = self.position
            if (not isinstance(p, (tuple, list)) or len(p) != 2
                    or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0 for v in p)):
                raise ValueError(f"Neuron.position must be None or (row, column) integers >= 0, got {p!r}")
            object.__setattr__(self, "position", (int(p[0]), int(p[1])))
        _check_at(self.at, "Neuron.at")


@dataclass(frozen=True)
class Channel(Neuron):
    """The score of a whole channel: the mean of ``act[n, channel]`` over its positions (what
    ``objectives.channel`` maximizes). ``at="input"`` reads the layer's input.

    >>> gradient(model, x, Channel("block4", 12))
    """

    def __post_init__(self) -> None:
        if self.position is not None:
            raise ValueError(f"a Channel is the whole map and has no position, got {self.position!r}: "
                             f"use Neuron(layer, channel, (i, j)) for one unit")
        super().__post_init__()


Target = Union[int, str, Sequence[Union[int, str]], torch.Tensor, Neuron, Callable[[torch.Tensor], torch.Tensor]]

_AT = ("output", "input")


def _check_at(at: str, name: str = "at") -> str:
    if at not in _AT:
        raise ValueError(f"{name} must be one of {', '.join(_AT)}, got {at!r}")
    return at


def _num_classes(model: nn.Module) -> int | None:
    cats = getattr(model, "categories", None)
    return len(cats) if cats else None


def _class_targets(model: nn.Module, target, n: int) -> torch.Tensor | None:
    """Validate a class target (before any work) -> LongTensor (n,) on CPU; None for Neuron/callable."""
    if isinstance(target, Neuron) or (callable(target) and not isinstance(target, torch.Tensor)):
        return None
    if isinstance(target, torch.Tensor):
        if target.dtype in (torch.float16, torch.float32, torch.float64, torch.bool):
            raise TypeError(f"a class target tensor must hold integer indices, got dtype {target.dtype}")
        items = target.flatten().tolist()
        if target.dim() == 0:
            items = [int(target)]
    elif isinstance(target, (list, tuple)):
        items = list(target)
    else:
        items = [target]
    if len(items) == 1 and n > 1:
        items = items * n
    if len(items) != n:
        raise ValueError(f"got {len(items)} class targets for a batch of {n} images: give one target, or one per image")
    k = _num_classes(model)
    out = []
    for t in items:
        if isinstance(t, bool):
            raise TypeError(f"a class target must be an index or a class name, not {t!r}")
        if isinstance(t, str):
            if not hasattr(model, "class_index"):
                raise TypeError(f"class name {t!r} needs a course model with .categories; "
                                f"{type(model).__name__} has none: pass a class index")
            t = model.class_index(t)
        if not isinstance(t, numbers.Integral):
            raise TypeError(f"a class target must be an int index or a class name, got {type(t).__name__}: {t!r}")
        t = int(t)
        if t < 0 or (k is not None and t >= k):
            valid = f"0..{k - 1}" if k is not None else "0 or more"
            raise IndexError(f"class index {t} is out of range: valid indices are {valid}")
        out.append(t)
    return torch.tensor(out, dtype=torch.long)


def _select(target, classes: torch.Tensor | None, logits: torch.Tensor, acts: dict) -> torch.Tensor:
    """Per-image scores (N,) of the target."""
    if classes is not None:
        if classes.max() >= logits.shape[1]:
            raise IndexError(f"class index {int(classes.max())} is out of range: the model has "
                             f"{logits.shape[1]} outputs (valid indices 0..{logits.shape[1] - 1})")
        return logits.gather(1, classes.to(logits.device)[:, None])[:, 0]
    if isinstance(target, Neuron):
        a = acts[("neuron", target.layer, target.at)]
        if a.dim() != 4:
            raise ValueError(f"Neuron needs a feature map (N,C,H,W) at layer {target.layer!r}, got shape {tuple(a.shape)}")
        check_index(target.channel, a.shape[1], "channel", where=f"layer {target.layer!r} has channels")
        if isinstance(target, Channel):
            return a[:, target.channel].mean((1, 2))
        i, j = target.position if target.position is not None else (a.shape[2] // 2, a.shape[3] // 2)
        if i >= a.shape[2] or j >= a.shape[3]:
            raise IndexError(f"position {(i, j)} is outside the {a.shape[2]}x{a.shape[3]} map of layer {target.layer!r}: "
                             f"rows 0..{a.shape[2] - 1}, columns 0..{a.shape[3] - 1}")
        return a[:, target.channel, i, j]
    s = target(logits)
    if not isinstance(s, torch.Tensor) or s.shape != logits.shape[:1]:
        raise ValueError(f"a callable target must return one score per image, shape ({logits.shape[0]},), "
                         f"got {type(s).__name__} {tuple(getattr(s, 'shape', ()))}")
    return s


def class_scores(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits ``(N, K)`` of ``x`` (no gradient, model state untouched): a convenience for targets.

    >>> class_scores(model, x).argmax(1)   # the predicted classes
    """
    x = _image(x)
    with frozen(model), torch.no_grad():
        return model(x.to(device_of(model))).to(x.device)


def _image(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    x = check_image(x, name)
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"{name} must hold pixel values in [0,1] (course models normalize inside), "
                         f"got values in [{lo:.3g}, {hi:.3g}]")
    return x
