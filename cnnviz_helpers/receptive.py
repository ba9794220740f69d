"""Receptive fields (lesson 01): which input pixels each unit of a layer depends on.

``receptive_field(model, layer)`` traces one forward pass on zeros under a
``TorchFunctionMode`` (``_RFMode``) that propagates, through every operation,
the box of input pixels each tensor element depends on. ``stages`` reads the
same trace to split a model into local stages.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ._names import resolve_layer
from ._util import device_of, size_pair
from .hooks import capture

__all__ = ["ReceptiveField", "receptive_field"]


@dataclass(frozen=True)
class ReceptiveField:
    """Where output unit (i, j) of a layer looks in the input, per axis (rows, cols).

    Unit ``u`` along an axis covers input pixels ``[start + u*stride, start + u*stride + size - 1]``
    (``start`` can be negative: padding). ``offset`` is the centre of unit 0:
    ``start + (size-1)/2``. ``box(i, j)`` gives (top, left, bottom, right), inclusive, unclipped.
    ``extent`` is ((top, bottom), (left, right)): the input pixels that reach this layer at all
    (a strided layer whose windows do not fit exactly drops its last rows/columns);
    ``clipped_box`` clips to it, so it is exactly the set of pixels a unit depends on.
    """

    size: tuple[int, int]
    stride: tuple[int, int]
    start: tuple[int, int]
    extent: tuple[tuple[int, int], tuple[int, int]] | None = None

    @property
    def offset(self) -> tuple[float, float]:
        return tuple(s + (r - 1) / 2 for s, r in zip(self.start, self.size))  # type: ignore[return-value]

    def box(self, i: int, j: int) -> tuple[int, int, int, int]:
        t = self.start[0] + i * self.stride[0]
        l = self.start[1] + j * self.stride[1]
        return t, l, t + self.size[0] - 1, l + self.size[1] - 1

    def clipped_box(self, i: int, j: int, height: int | None = None, width: int | None = None) -> tuple[int, int, int, int]:
        """``box(i, j)`` clipped to the pixels that reach this layer (``extent``) and to the image."""
        t, l, b, r = self.box(i, j)
        (et, eb), (el, er) = self.extent if self.extent is not None else ((0, 10**9), (0, 10**9))
        t, l, b, r = max(t, et, 0), max(l, el, 0), min(b, eb), min(r, er)
        if height is not None:
            b = min(b, height - 1)
        if width is not None:
            r = min(r, width - 1)
        return t, l, b, r


@dataclass(frozen=True)
class _RF:
    # per axis: (size, stride, start, lo, hi); [lo, hi] = input pixels that reach the tensor at all.
    # None = depends on the whole input (global)
    rows: tuple[int, int, int, int, int] | None
    cols: tuple[int, int, int, int, int] | None
    exact: bool = True


def _identity(h: int, w: int) -> _RF:
    return _RF((1, 1, 0, 0, h - 1), (1, 1, 0, 0, w - 1))


def _axis_conv(a, k, s, p, d, n_out):
    r, j, st, lo, hi = a
    r2, j2, st2 = r + (k - 1) * d * j, j * s, st - p * j
    # the n_out units cover [st2, st2 + (n_out-1)*j2 + r2 - 1]; only pixels that reached the input count
    return (r2, j2, st2, max(lo, st2), min(hi, st2 + (n_out - 1) * j2 + r2 - 1))


def _union(a, b):
    if a is None or b is None:
        return None
    if a[1] != b[1]:
        return None  # different strides: no single box description
    st = min(a[2], b[2])
    end = max(a[2] + a[0], b[2] + b[0])
    return (end - st, a[1], st, min(a[3], b[3]), max(a[4], b[4]))


def _arg(args: tuple, kwargs: dict, i: int, name: str, default=None):
    """Positional argument ``i`` or keyword ``name`` of a traced call."""
    return args[i] if len(args) > i else kwargs.get(name, default)


def _spatial(out) -> torch.Tensor | None:
    o = out[0] if isinstance(out, (tuple, list)) and out else out
    return o if isinstance(o, torch.Tensor) else None


def _windowed(r0: _RF | None, k, s, p, d, out) -> _RF:
    """A sliding window (convolution, pooling): the receptive fields compose per axis."""
    no = _spatial(out).shape[-2:]
    return _RF(
        _axis_conv(r0.rows, k[0], s[0], p[0], d[0], no[0]) if r0 and r0.rows else None,
        _axis_conv(r0.cols, k[1], s[1], p[1], d[1], no[1]) if r0 and r0.cols else None,
        r0.exact if r0 else False,
    )


def _conv(mode: "_RFMode", args, kwargs, out, x, ins) -> _RF:
    w = _arg(args, kwargs, 1, "weight")
    k = tuple(w.shape[-2:])
    s = size_pair(_arg(args, kwargs, 3, "stride", 1))
    p = _arg(args, kwargs, 4, "padding", 0)
    d = size_pair(_arg(args, kwargs, 5, "dilation", 1))
    if isinstance(p, str):  # 'valid', or 'same' (stride 1): left pad = total // 2
        p = (0, 0) if p == "valid" else tuple(dd * (kk - 1) // 2 for kk, dd in zip(k, d))
    return _windowed(mode.get(x), k, s, size_pair(p), d, out)


def _pool(mode: "_RFMode", args, kwargs, out, x, ins, name: str = "") -> _RF:
    k = size_pair(_arg(args, kwargs, 1, "kernel_size"))
    s = _arg(args, kwargs, 2, "stride")
    s = size_pair(s) if s not in (None, [], ()) else k
    p = size_pair(_arg(args, kwargs, 3, "padding", 0))
    d = size_pair(kwargs.get("dilation", args[4] if len(args) > 4 and "max" in name else 1))
    return _windowed(mode.get(x), k, s, p, d, out)


def _pad(mode: "_RFMode", args, kwargs, out, x, ins) -> _RF:
    pad = _arg(args, kwargs, 1, "pad")
    r0 = mode.get(x)
    pl = pad[0] if len(pad) > 0 else 0
    pt = pad[2] if len(pad) > 2 else 0
    return _RF(
        (r0.rows[0], r0.rows[1], r0.rows[2] - pt * r0.rows[1], r0.rows[3], r0.rows[4]) if r0 and r0.rows else None,
        (r0.cols[0], r0.cols[1], r0.cols[2] - pl * r0.cols[1], r0.cols[3], r0.cols[4]) if r0 and r0.cols else None,
        r0.exact if r0 else False,
    )


def _elementwise(mode: "_RFMode", args, kwargs, out, x, ins) -> _RF | None:
    """Elementwise and channel ops at one resolution (relu, batch norm, add, mul, cat): the union of
    the inputs' boxes. ``None`` (not describable) when a spatial output changes resolution."""
    o = _spatial(out)
    if o is not None and o.dim() == 4 and isinstance(x, torch.Tensor) and x.dim() == 4 \
            and o.shape[-2:] != x.shape[-2:]:
        return None
    rows, cols = ins[0].rows, ins[0].cols
    for r in ins[1:]:
        rows, cols = _union(rows, r.rows), _union(cols, r.cols)
    return _RF(rows, cols, all(r.exact for r in ins))


def _adaptive(mode: "_RFMode", args, kwargs, out, x, ins) -> _RF | None:
    """Adaptive pooling: the identity when it keeps the size, global pooling to 1x1; else not describable
    (windows of varying size)."""
    o = _spatial(out)
    if o.shape[-2:] == x.shape[-2:]:
        return _elementwise(mode, args, kwargs, out, x, ins)
    return _RF(None, None, True) if tuple(o.shape[-2:]) == (1, 1) else None


def _whole(mode: "_RFMode", args, kwargs, out, x, ins) -> _RF | None:
    """Flatten, linear, reductions: every unit depends on the whole input. A spatial map out of one of
    these (a reshape that keeps H x W) is not describable."""
    o = _spatial(out)
    if o is not None and o.dim() == 4 and tuple(o.shape[-2:]) != (1, 1):
        return None
    return _RF(None, None, True)


def _names(*groups: str) -> list[str]:
    return [n for g in groups for n in g.split()]


# The ops the tracer knows, by __name__. Any other op on a traced tensor makes what follows not
# describable: receptive_field then refuses the layers after it, naming the op.
_RULES: dict[str, Callable] = {
    "conv2d": _conv,
    "max_pool2d": lambda *a: _pool(*a, name="max"), "max_pool2d_with_indices": lambda *a: _pool(*a, name="max"),
    "_max_pool2d": lambda *a: _pool(*a, name="max"), "avg_pool2d": _pool,
    "pad": _pad,
    **{n: _adaptive for n in _names("adaptive_avg_pool2d adaptive_max_pool2d adaptive_max_pool2d_with_indices")},
    **{n: _elementwise for n in _names(
        "relu relu_ relu6 hardtanh hardtanh_ threshold threshold_ leaky_relu leaky_relu_ elu elu_ gelu silu",
        "sigmoid tanh hardswish hardsigmoid mish batch_norm dropout dropout2d feature_dropout alpha_dropout",
        "add add_ __add__ __radd__ __iadd__ sub sub_ __sub__ __rsub__ __isub__ mul mul_ __mul__ __rmul__",
        "__imul__ div div_ __truediv__ __rtruediv__ __itruediv__ neg abs clamp clamp_ clip cat concat",
        "clone contiguous to float detach")},
    **{n: _whole for n in _names("flatten view reshape linear mean sum amax amin softmax log_softmax addmm matmul")},
}


class _RFMode(TorchFunctionMode):
    """Propagates receptive fields through every op of one forward pass (the ops of ``_RULES``)."""

    def __init__(self) -> None:
        super().__init__()
        self.rf: dict[int, tuple[torch.Tensor, _RF]] = {}
        self.unsupported: set[str] = set()

    def get(self, t) -> _RF | None:
        e = self.rf.get(id(t)) if isinstance(t, torch.Tensor) else None
        return e[1] if e is not None and e[0] is t else None

    def put(self, t, rf: _RF) -> None:
        if isinstance(t, torch.Tensor):
            self.rf[id(t)] = (t, rf)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        if not any(isinstance(o, torch.Tensor) for o in outs):
            return out  # .size(), .dim(): nothing to trace
        flat_in = [a for a in _flatten(args) + _flatten(list(kwargs.values())) if isinstance(a, torch.Tensor)]
        ins = [r for r in (self.get(a) for a in flat_in) if r is not None]
        if not ins:
            return out
        name = getattr(func, "__name__", str(func))
        rule = _RULES.get(name)
        res = rule(self, args, kwargs, out, flat_in[0], ins) if rule is not None else None
        if res is None:
            self.unsupported.add(name)
            res = _RF(None, None, False)
        for o in outs:
            self.put(o, res)
        return out


def _flatten(xs):
    out = []
    for a in xs:
        if isinstance(a, (list, tuple)):
            out.extend(_flatten(a))
        else:
            out.append(a)
    return out


def receptive_field(
    model: nn.Module,
    layer: str,
    input_size: int | tuple[int, int] | None = None,
) -> ReceptiveField:
    """Exact receptive field (size, stride, start/offset) of the units of ``layer``'s output.

    Traces one forward pass on zeros and propagates, through every operation,
    the box of input pixels each unit depends on: convolutions and poolings
    (kernel, stride, padding, dilation; asymmetric 'same' padding too) compose;
    elementwise ops, residual sums and channel concatenations take the union of
    their inputs' boxes. Exact for conv/pool chains and for branches that meet
    at the same stride (ResNet, Inception, EfficientNet). Raises ``ValueError``
    for a layer whose units see the whole image (after global pooling / fc) and
    for ops it cannot describe (e.g. interpolation).

    >>> rf = receptive_field(load_model("alexnet", weights=None), "conv1")
    >>> rf.size, rf.stride   # ((11, 11), (4, 4))
    """
    dotted, module = resolve_layer(model, layer)
    h, w = size_pair(input_size if input_size is not None else getattr(model, "input_size", 224))
    mode = _RFMode()
    with capture(model, [layer]) as rec, torch.no_grad():
        x = torch.zeros(1, 3, h, w, device=device_of(model))
        mode.put(x, _identity(h, w))
        with mode:
            model(x)
    if layer not in rec.activations:
        raise RuntimeError(f"layer {layer!r} ({dotted}) never ran in forward(): is it used by the model?")
    rf = mode.get(rec.activations[layer])
    if rf is None:
        raise ValueError(f"layer {layer!r} ({dotted}) does not depend on the input image")
    if rf.rows is None or rf.cols is None:
        if not rf.exact:
            raise ValueError(
                f"cannot compute the receptive field of {layer!r} ({dotted}): it follows operations "
                f"that are not convolutions, poolings or elementwise ({', '.join(sorted(mode.unsupported)) or 'unknown'})"
            )
        raise ValueError(
            f"the units of {layer!r} ({dotted}) see the whole input (it comes after global pooling or a "
            f"fully connected layer): its receptive field is the image, not a patch"
        )
    return ReceptiveField(size=(rf.rows[0], rf.cols[0]), stride=(rf.rows[1], rf.cols[1]), start=(rf.rows[2], rf.cols[2]),
                          extent=((rf.rows[3], rf.rows[4]), (rf.cols[3], rf.cols[4])))
