"""Batch norms folded into the convolutions before them, in a private copy of the model (lesson 04's
incremental occlusion runs on it; ``stages`` re-exports ``folded_copy``)."""
from __future__ import annotations

import copy
import weakref

import torch
from torch import nn

from .hooks import frozen, module_hooks

__all__ = ["folded_copy"]


def _check_image(x, who: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{who} needs an image batch (N,3,H,W), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")


_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
               "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks")


def folded_copy(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, int]:
    """A private inference copy of ``model`` and the number of batch norms folded into it.

    One traced forward pass on ``x`` finds each ``BatchNorm2d`` whose input is exactly
    the output of a ``Conv2d`` (each called once); in the copy the pair becomes one
    convolution with ``w' = w * gamma / sqrt(var + eps)`` and
    ``b' = (b - mean) * gamma / sqrt(var + eps) + beta`` (eval-mode batch norm is an
    affine map per channel), and a symmetric zero-padding module in front of a
    convolution (EfficientNet's 'same' padding) becomes the convolution's own padding.
    The copy has no hooks and no gradients. ``(model, 0)`` when there is nothing to
    fold (nothing is copied then). The model is left as it was.

    The copy is remembered for the model (weakly) and made again as soon as any of
    its parameters or buffers is replaced or changed in place (``Tensor._version``),
    or the input size changes.
    """
    _check_image(x, "folded_copy")
    key = (tuple(x.shape[-2:]), str(x.device), x.dtype,
           tuple((id(t), t._version) for t in (*model.parameters(), *model.buffers())))
    hit = _FOLDED.get(model)
    if hit is not None and hit[0] == key:
        return hit[1], hit[2]
    with frozen(model), torch.no_grad():
        copy_, n = _folded_copy(model, x.detach())
    if n:
        _FOLDED[model] = (key, copy_, n)
    return copy_, n


_FOLDED: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _folded_copy(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, int]:
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    conv_out: dict[int, tuple[str, torch.Tensor]] = {}
    calls: dict[str, int] = {}
    pairs: list[tuple[str, str]] = []

    def on_conv(name):
        def hook(mod, inp, out):
            calls[name] = calls.get(name, 0) + 1
            conv_out[id(out)] = (name, out)
        return hook

    def on_bn(name):
        def hook(mod, inp, out):
            calls[name] = calls.get(name, 0) + 1
            e = conv_out.get(id(inp[0]))
            if e is not None and e[1] is inp[0]:
                pairs.append((e[0], name))
        return hook

    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            hooks.append((m, on_conv(name)))
        elif isinstance(m, nn.BatchNorm2d) and m.track_running_stats and m.running_mean is not None:
            hooks.append((m, on_bn(name)))
    with module_hooks(hooks):
        model(x)
    pairs = [(c, b) for c, b in pairs if calls[c] == 1 and calls[b] == 1]
    if not pairs:
        return model, 0
    copy_ = copy.deepcopy(model).eval()
    for m in copy_.modules():
        for d in _HOOK_DICTS:
            if isinstance(getattr(m, d, None), dict):
                getattr(m, d).clear()
    for p in copy_.parameters():
        p.requires_grad_(False)
        p.grad = None
    for c, b in pairs:
        conv, bn = copy_.get_submodule(c), copy_.get_submodule(b)
        _set(copy_, c, fuse_conv_bn_eval(conv, bn))
        _set(copy_, b, nn.Identity())
    for m in copy_.modules():
        pad = getattr(m, "static_padding", None)
        if isinstance(m, nn.Conv2d) and isinstance(pad, nn.ZeroPad2d) and tuple(m.padding) == (0, 0):
            left, right, top, bottom = pad.padding
            if left == right and top == bottom:
                m.padding = (top, left)
                m.static_padding = nn.Identity()
    return copy_, len(pairs)


def _set(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)
