"""The one place in the package that registers hooks (private).

``module_hooks`` registers forward and pre-forward hooks for the duration of a
``with`` block and removes every one of them in its ``finally`` (success,
error, Ctrl-C); ``tensor_hook`` registers a gradient hook on a tensor, which
lives and dies with the autograd graph. ``capture`` and ``relu_rule`` are
built on them; the rest of the package goes through those two, or through
``module_hooks`` where it needs a module-level callback that is neither.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

__all__ = ["module_hooks", "tensor_hook"]

Hook = tuple[nn.Module, Callable]


@contextlib.contextmanager
def module_hooks(forward: Iterable[Hook] = (), *, pre: Iterable[Hook] = ()) -> Iterator[None]:
    """Register ``(module, fn)`` forward hooks (``fn(mod, inp, out)``) and pre-forward hooks
    (``fn(mod, inp)``) for the block; every one is removed on exit, also on error or Ctrl-C."""
    handles = []
    try:
        for m, fn in pre:
            handles.append(m.register_forward_pre_hook(fn))
        for m, fn in forward:
            handles.append(m.register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


def tensor_hook(t: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> None:
    """``fn(grad)`` on the gradient arriving at ``t`` in a backward pass (its return value, if not None,
    replaces the gradient). The hook belongs to the graph of this forward pass and dies with it."""
    t.register_hook(fn)
