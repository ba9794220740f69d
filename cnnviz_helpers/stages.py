"""A classifier seen as a chain of stages, and which input units each stage reads.

Occlusion (lesson 04) changes one small patch of the image. In a CNN every unit
of a convolutional layer depends only on its receptive field, so a patch changes
only a small region of the early feature maps; recomputing just that region
(plus the margin the next stage reads) gives exactly the same result for a
fraction of the cost. This module finds, for the course models, a chain of
callables whose composition is the model's forward pass::

    logits = tail(stage_n(... stage_1(x)))

and, for each spatially local stage, its geometry per axis ``(k, s, p)``:
output unit ``u`` reads input units ``u*s - p .. u*s - p + k - 1``. The geometry
is not declared by hand: it is read off the receptive fields traced through the
real forward pass (``receptive._RFMode``), so residual sums, asymmetric 'same'
padding and pooling are covered. A stage whose units see the whole map (global
pooling, squeeze-excitation, fully connected) and everything after it form the
``tail``.

A chain is only used after it has been checked: its composition must reproduce
the model's logits on the image at hand (``chain_of(model, x)`` raises
``ChainUnavailable`` with the reason otherwise). ``chain.forward_changed(xb, spans)``
then computes the logits of images that differ from that image only inside given
boxes, stage by stage, on the changed regions (``dirty_span``).
"""
from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .hooks import module_hooks
from .receptive import _RFMode, _identity

__all__ = ["Chain", "ChainUnavailable", "Stage", "chain_of", "dirty_span", "folded_copy"]

Geometry = tuple[int, int, int]  # (k, s, p) along one axis


class ChainUnavailable(ValueError):
    """The model cannot be split into checked local stages (the reason is the message)."""


@dataclass(frozen=True)
class Stage:
    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    rows: Geometry | None  # None: recompute the whole map (geometry not a plain (k, s, p))
    cols: Geometry | None


@dataclass(frozen=True)
class Chain:
    local: list[Stage]
    tail: Callable[[torch.Tensor], torch.Tensor]
    tail_names: list[str]
    clean: list[torch.Tensor]  # the checked image's input and every local stage's output
    folded: int = 0  # batch norms folded into convolutions (stages run on a private copy)
    logits: torch.Tensor | None = None  # the model's own output for the checked image

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for st in self.local:
            x = st.fn(x)
        return self.tail(x)

    def forward_changed(self, xb: torch.Tensor, spans) -> torch.Tensor:
        """The output for images ``xb`` that differ from the checked image only inside
        ``spans[i] = ((top, bottom), (left, right))``, recomputing only what changed."""
        return _forward_changed(self, xb, spans)


def _seq(prefix: str, mods) -> list[tuple[str, Callable]]:
    out: list[tuple[str, Callable]] = []
    for n, m in mods:
        if isinstance(m, nn.Sequential):
            out += _seq(f"{prefix}{n}.", m.named_children())
        else:
            out.append((f"{prefix}{n}", m))
    return out


def _flatten1(z: torch.Tensor) -> torch.Tensor:
    return torch.flatten(z, 1)


def _candidate(net: nn.Module, prefix: str = "") -> list[tuple[str, Callable]] | None:
    """The chain of a network of a known shape, or None. Checked numerically by the caller."""
    try:  # EfficientNet-Lite (efficientnet_lite_pytorch): stem, 16 MBConv blocks, head, pool, fc
        from efficientnet_lite_pytorch import EfficientNet  # type: ignore
    except ImportError:  # pragma: no cover
        EfficientNet = ()  # type: ignore[assignment]
    if EfficientNet and isinstance(net, EfficientNet):
        if getattr(net._global_params, "local_pooling", False):
            return None
        n = len(net._blocks)
        ch: list[tuple[str, Callable]] = [(f"{prefix}stem", lambda z: net._swish(net._bn0(net._conv_stem(z))))]
        for i, b in enumerate(net._blocks):
            rate = net._global_params.drop_connect_rate
            rate = rate * float(i) / n if rate else rate
            ch.append((f"{prefix}_blocks.{i}", lambda z, b=b, r=rate: b(z, drop_connect_rate=r)))
        ch.append((f"{prefix}head", lambda z: net._swish(net._bn1(net._conv_head(z)))))
        ch.append((f"{prefix}_avg_pooling", net._avg_pooling))
        ch.append((f"{prefix}flatten", _flatten1))
        ch.append((f"{prefix}_dropout", net._dropout))
        ch.append((f"{prefix}_fc", net._fc))
        return ch
    if isinstance(net, nn.Sequential):
        return _seq(prefix, net.named_children())
    names = dict(net.named_children())
    if all(k in names for k in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer4", "avgpool", "fc")):
        ch = _seq(prefix, [(k, names[k]) for k in ("conv1", "bn1", "relu", "maxpool")])  # ResNet
        for k in ("layer1", "layer2", "layer3", "layer4"):
            ch += _seq(f"{prefix}{k}.", names[k].named_children())
        return ch + [(f"{prefix}avgpool", names["avgpool"]), (f"{prefix}flatten", _flatten1), (f"{prefix}fc", names["fc"])]
    if "features" in names and isinstance(names["features"], nn.Sequential):
        feats = _seq(f"{prefix}features.", names["features"].named_children())
        pool = next((k for k in ("avgpool", "pool") if k in names), None)
        head = next((k for k in ("classifier", "fc") if k in names), None)
        if head is None:
            return None
        if pool is not None:  # AlexNet, VGG, the tests' TinyNet: features, pool, flatten, head
            return feats + [(f"{prefix}{pool}", names[pool]), (f"{prefix}flatten", _flatten1),
                            (f"{prefix}{head}", names[head])]
        return feats + [(f"{prefix}{head}", names[head]), (f"{prefix}flatten", _flatten1)]  # SqueezeNet
    return None


def _geometry(a, b) -> Geometry | None:
    """Local (k, s, p) of a stage from the cumulative receptive fields (size, jump, start, ...) of
    its input ``a`` and output ``b`` along one axis."""
    (r0, j0, st0), (r1, j1, st1) = a[:3], b[:3]
    if j1 % j0 or (r1 - r0) % j0 or (st0 - st1) % j0:
        return None
    k, s, p = (r1 - r0) // j0 + 1, j1 // j0, (st0 - st1) // j0
    return (k, s, p) if k >= 1 and s >= 1 else None


def chain_of(model: nn.Module, x: torch.Tensor, *, atol: float = 1e-4, fold: bool = False) -> Chain:
    """The model as checked local stages + tail, for images shaped like ``x`` ``(1,3,H,W)``.

    Raises ``ChainUnavailable`` naming the reason when the model's structure is not
    one this module knows (a chain for ``CourseModel`` around EfficientNet-Lite,
    ResNet, AlexNet/VGG/SqueezeNet-style ``features`` + head, or ``nn.Sequential``),
    when no stage is spatially local, or when the chain does not reproduce the
    model's logits on ``x`` within ``atol`` (relative to the largest logit).
    The model is left as it was (``hooks.frozen``); the chain's stages call the
    model's own modules, so use it under ``frozen(model)`` and ``torch.no_grad()``.

    ``fold=True``: the stages run on a private inference copy of the model
    (``folded_copy``: batch norms folded into the convolutions before them), still
    checked against the model itself; the model's own hooks do not fire in it. Where
    there is nothing to fold, or the folded chain fails the check, the model's own
    modules are used (``chain.folded`` is 0).
    """
    from .hooks import frozen

    _check_image(x, "chain_of")
    with frozen(model), torch.no_grad():
        x = x.detach()
        if fold:
            folded, n = folded_copy(model, x)
            if n:
                try:
                    return _chain_of(model, x, atol, folded, n)
                except ChainUnavailable:
                    pass  # the unfolded chain below says why, or works
        return _chain_of(model, x, atol, model, 0)


def _check_image(x, who: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{who} needs an image batch (N,3,H,W), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")


def _chain_of(model: nn.Module, x: torch.Tensor, atol: float, runs: nn.Module, folded: int) -> Chain:
    """The chain of ``runs`` (the model or its folded copy), checked against ``model``."""
    from .models import CourseModel

    if isinstance(runs, CourseModel):
        inner = _candidate(runs.net, "net.")
        ch = None if inner is None else [("normalize", runs.normalize)] + inner
    else:
        ch = _candidate(runs)
    if ch is None:
        raise ChainUnavailable(
            f"{type(getattr(model, 'net', model)).__name__} is not a structure the incremental path knows "
            f"(EfficientNet-Lite, ResNet, a features+classifier network like AlexNet/VGG/SqueezeNet, or "
            f"nn.Sequential)")

    # trace receptive fields through the chain: which stages are local, and their (k, s, p)
    mode = _RFMode()
    z = torch.zeros_like(x)
    h, w = x.shape[-2:]
    mode.put(z, _identity(h, w))
    rfs = [mode.get(z)]
    with mode:
        for _, fn in ch:
            z = fn(z)
            rfs.append(mode.get(z) if isinstance(z, torch.Tensor) else None)
    n_local = 0
    for i in range(len(ch)):
        r = rfs[i + 1]
        if r is None or r.rows is None or r.cols is None or not r.exact:
            break
        n_local += 1
    if not n_local:
        raise ChainUnavailable("no stage of the model is spatially local (its first stage sees the whole image)")
    rest = ch[n_local:]

    def tail(t: torch.Tensor) -> torch.Tensor:
        for _, fn in rest:
            t = fn(t)
        return t

    # the clean pass, stage by stage (each input cloned: a stage may work in place)
    clean = [x]
    for _, fn in ch[:n_local]:
        clean.append(fn(clean[-1].clone()))
    want = model(x)
    got = tail(clean[-1].clone())
    err = float((got - want).abs().max()) if got.shape == want.shape else float("inf")
    if err > atol * (1.0 + float(want.abs().max())):
        raise ChainUnavailable(
            f"the stages found for {type(getattr(model, 'net', model)).__name__} do not reproduce its forward() "
            f"(max |difference| {err:.3g}): its forward does something more")

    # each stage must give on a crop what it gives on the full map (adaptive pooling, for one,
    # does not: it resizes whatever it gets); a stage that does not is recomputed whole
    local: list[Stage] = []
    for i, (name, fn) in enumerate(ch[:n_local]):
        rows, cols = _geometry(rfs[i].rows, rfs[i + 1].rows), _geometry(rfs[i].cols, rfs[i + 1].cols)
        if rows is not None and cols is not None and not _crop_consistent(fn, rows, cols, clean[i], clean[i + 1]):
            rows = cols = None
        local.append(Stage(name, fn, rows, cols))
    return Chain(local, tail, [n for n, _ in rest], clean, folded, want)


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
    from .hooks import frozen

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


def _crop_consistent(fn, rows: Geometry, cols: Geometry, inp: torch.Tensor, out: torch.Tensor) -> bool:
    (h, w), (ho, wo) = inp.shape[-2:], out.shape[-2:]
    ph = dirty_span(rows, h // 3, max(h // 3, h // 2), h, ho)
    pw = dirty_span(cols, w // 3, max(w // 3, w // 2), w, wo)
    if ph is None or pw is None:
        return False
    ((c0, c1), (a, b), oa), ((d0, d1), (e, f), oe) = ph, pw
    res = fn(inp[..., c0:c1 + 1, d0:d1 + 1].clone())
    part = res[..., oa:oa + b - a + 1, oe:oe + f - e + 1]
    ref = out[..., a:b + 1, e:f + 1]
    return part.shape == ref.shape and float((part - ref).abs().max()) <= 1e-4 * (1.0 + float(ref.abs().max()))


def dirty_span(geom: Geometry | None, lo: int, hi: int, n_in: int, n_out: int):
    """Along one axis: input units ``lo..hi`` (inclusive) have changed. Returns
    ``((c0, c1), (a, b), o)``: recompute the stage on input units ``c0..c1``; its
    outputs ``o .. o + b - a`` are the changed output units ``a..b``, exact;
    everything else of the output is unchanged. ``None`` when no output changes.

    ``c0`` is a multiple of the stage's stride, so the crop's outputs fall on the
    full map's grid, and the crop holds every input unit those outputs read,
    so the padding the stage adds at the crop's edges never reaches them.
    """
    if geom is None:
        return (0, n_in - 1), (0, n_out - 1), 0
    k, s, p = geom
    a = max(0, -((p - k + 1 + lo) // -s))  # ceil((lo + p - k + 1) / s)
    b = min(n_out - 1, (hi + p) // s)
    if a > b:
        return None
    c0 = (max(0, a * s - p) // s) * s
    c1 = min(n_in - 1, b * s - p + k - 1)
    return (c0, c1), (a, b), a - c0 // s


def _stride(geom) -> int:
    return 1 if geom is None else geom[1]


def _common_length(crops: list[tuple[int, int]], n: int, geom) -> int:
    """A crop length that holds every crop ``(c0, c1)`` and, placed at the map's end, starts on the
    stride's grid (so every grown crop can stay inside the map)."""
    s = _stride(geom)
    length = max(c1 - c0 + 1 for c0, c1 in crops)
    return min(n, length + (n - length) % s)


def _grown_start(crop: tuple[int, int], length: int, n: int, geom) -> int:
    """Start of the crop of ``length`` that contains ``crop``, on the stride's grid, inside ``0..n-1``."""
    c0, c1 = crop
    start = min(c0, n - length)  # n - length is on the grid by _common_length (or 0)
    start -= start % _stride(geom)
    assert 0 <= start <= c0 and start + length - 1 >= c1, (crop, length, n, geom)
    return start


_WHOLE_MAP_FRACTION = 0.6  # crops larger than this part of the map: run the stage on whole maps (measured)


def _forward_changed(chain: "Chain", xb: torch.Tensor, spans) -> torch.Tensor:
    """Logits of the images ``xb``, which differ from the checked image ``chain.clean[0]`` only inside
    ``spans[i] = ((top, bottom), (left, right))`` (inclusive): each local stage is recomputed
    on the changed region of its input (plus the margin it reads) and pasted into a copy of
    its clean output; the crops of all images grow to one size and go through the stage together.
    Stages run on channels-last tensors: CPU convolutions (depthwise ones above all) are
    markedly faster in that layout; the values are the same up to float rounding."""
    clean = chain.clean
    cur = xb
    live = list(range(xb.shape[0]))  # images whose maps still differ from the clean ones
    for i, stage in enumerate(chain.local):
        (n_in_h, n_in_w), (n_out_h, n_out_w) = cur.shape[-2:], clean[i + 1].shape[-2:]
        plans = {}
        for k in live:
            (t, b), (l, r) = spans[k]
            ph = dirty_span(stage.rows, t, b, n_in_h, n_out_h)
            pw = dirty_span(stage.cols, l, r, n_in_w, n_out_w)
            if ph is not None and pw is not None:
                plans[k] = (ph, pw)
        if not plans:  # nothing changed any more (a strided stage dropped the changed units)
            cur = clean[i + 1].expand(cur.shape[0], *clean[i + 1].shape[1:]).clone()
            live, spans = [], {}
            continue
        area = max((ph[0][1] - ph[0][0] + 1) * (pw[0][1] - pw[0][0] + 1) for ph, pw in plans.values())
        if area >= _WHOLE_MAP_FRACTION * n_in_h * n_in_w:
            # the changed regions cover most of the map: one plain forward of the whole batch beats
            # many crops (from here on every later stage runs whole too)
            cur = stage.fn(cur.contiguous(memory_format=torch.channels_last))
            spans = {k: ((0, n_out_h - 1), (0, n_out_w - 1)) for k in plans}
            live = list(plans)
            continue
        nxt = clean[i + 1].expand(cur.shape[0], *clean[i + 1].shape[1:]).clone()
        # one crop size for the whole batch (a single call of the stage): each crop grows to the
        # largest, staying on the stride's grid and inside the map
        members = list(plans)
        lh = _common_length([plans[k][0][0] for k in members], n_in_h, stage.rows)
        lw = _common_length([plans[k][1][0] for k in members], n_in_w, stage.cols)
        starts = [(_grown_start(plans[k][0][0], lh, n_in_h, stage.rows),
                   _grown_start(plans[k][1][0], lw, n_in_w, stage.cols)) for k in members]
        crops = torch.stack([cur[k, :, r0:r0 + lh, q0:q0 + lw] for k, (r0, q0) in zip(members, starts)])
        res = stage.fn(crops.contiguous(memory_format=torch.channels_last))
        for j, (k, (r0, q0)) in enumerate(zip(members, starts)):
            ((_, (a, b), _), (_, (e, f), _)) = plans[k]
            oa, oe = a - r0 // _stride(stage.rows), e - q0 // _stride(stage.cols)
            nxt[k, :, a:b + 1, e:f + 1] = res[j, :, oa:oa + b - a + 1, oe:oe + f - e + 1]
        spans = {k: (plans[k][0][1], plans[k][1][1]) for k in plans}
        live = list(plans)
        cur = nxt
    return chain.tail(cur)
