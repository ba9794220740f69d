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

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ._crops import Geometry, _crop_consistent, dirty_span, run_on_changed
from .folding import _check_image, folded_copy
from .hooks import frozen
from .receptive import _RFMode, _identity

__all__ = ["Chain", "ChainUnavailable", "Stage", "chain_of", "dirty_span", "folded_copy"]



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
        return run_on_changed(self, xb, spans)


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
