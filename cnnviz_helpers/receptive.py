"""Receptive fields (lesson 01): which input pixels each unit of a layer depends on.

``receptive_field(model, layer)`` traces one forward pass on zeros under a
``TorchFunctionMode`` (``_RFMode``) that propagates, through every operation,
the box of input pixels each tensor element depends on. ``stages`` reads the
same trace to split a model into local stages.
"""
from __future__ import annotations

from dataclasses import dataclass

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


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


class _RFMode(TorchFunctionMode):
    """Propagates receptive fields through every op of one forward pass."""

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
        flat_in = [a for a in _flatten(args) + _flatten(list(kwargs.values())) if isinstance(a, torch.Tensor)]
        ins = [self.get(a) for a in flat_in]
        ins = [r for r in ins if r is not None]
        if not ins:
            return out
        name = getattr(func, "__name__", str(func))
        x = flat_in[0]  # the first tensor argument (torch.cat takes a list)
        res: _RF | None
        if name in ("conv2d",):
            w = args[1] if len(args) > 1 else kwargs["weight"]
            s = _pair(args[3] if len(args) > 3 else kwargs.get("stride", 1))
            p = args[4] if len(args) > 4 else kwargs.get("padding", 0)
            d = _pair(args[5] if len(args) > 5 else kwargs.get("dilation", 1))
            k = tuple(w.shape[-2:])
            if isinstance(p, str):
                if p == "valid":
                    p = (0, 0)
                else:  # 'same' (stride 1): left pad = total // 2
                    p = tuple(dd * (kk - 1) // 2 for kk, dd in zip(k, d))
            p = _pair(p)
            r0 = self.get(x)
            no = out.shape[-2:]
            res = _RF(
                _axis_conv(r0.rows, k[0], s[0], p[0], d[0], no[0]) if r0 and r0.rows else None,
                _axis_conv(r0.cols, k[1], s[1], p[1], d[1], no[1]) if r0 and r0.cols else None,
                r0.exact if r0 else False,
            )
        elif name in ("max_pool2d", "avg_pool2d", "max_pool2d_with_indices", "_max_pool2d"):
            k = _pair(args[1] if len(args) > 1 else kwargs["kernel_size"])
            s = args[2] if len(args) > 2 else kwargs.get("stride", None)
            s = _pair(s) if s not in (None, [], ()) else k
            p = _pair(args[3] if len(args) > 3 else kwargs.get("padding", 0))
            d = _pair(kwargs.get("dilation", args[4] if len(args) > 4 and "max" in name else 1))
            r0 = self.get(x)
            o = out[0] if isinstance(out, (tuple, list)) else out
            no = o.shape[-2:]
            res = _RF(
                _axis_conv(r0.rows, k[0], s[0], p[0], d[0], no[0]) if r0 and r0.rows else None,
                _axis_conv(r0.cols, k[1], s[1], p[1], d[1], no[1]) if r0 and r0.cols else None,
                r0.exact if r0 else False,
            )
        elif name == "pad":
            pad = args[1] if len(args) > 1 else kwargs["pad"]
            r0 = self.get(x)
            pl = pad[0] if len(pad) > 0 else 0
            pt = pad[2] if len(pad) > 2 else 0
            res = _RF(
                (r0.rows[0], r0.rows[1], r0.rows[2] - pt * r0.rows[1], r0.rows[3], r0.rows[4]) if r0 and r0.rows else None,
                (r0.cols[0], r0.cols[1], r0.cols[2] - pl * r0.cols[1], r0.cols[3], r0.cols[4]) if r0 and r0.cols else None,
                r0.exact if r0 else False,
            )
        elif isinstance(out, torch.Tensor) and out.dim() == 4 and isinstance(x, torch.Tensor) and x.dim() == 4 \
                and out.shape[-2:] == x.shape[-2:]:
            # elementwise / channel ops at the same resolution (relu, bn, add, mul, cat): union of inputs
            rows, cols = ins[0].rows, ins[0].cols
            exact = all(r.exact for r in ins)
            for r in ins[1:]:
                rows, cols = _union(rows, r.rows), _union(cols, r.cols)
            res = _RF(rows, cols, exact)
        elif isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-2:] == (1, 1):
            res = _RF(None, None, True)  # global pooling: depends on the whole image
        else:
            if isinstance(out, torch.Tensor) and out.dim() == 4 and isinstance(x, torch.Tensor) and x.dim() == 4:
                self.unsupported.add(name)
                res = _RF(None, None, False)
            else:
                res = _RF(None, None, True)  # flatten/linear: every input pixel
        if isinstance(out, torch.Tensor):
            self.put(out, res)
        elif isinstance(out, (tuple, list)):
            for o in out:
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
