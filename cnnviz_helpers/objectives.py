"""Objectives (scores to maximize) and penalties (to subtract), composed with ``+ - * /``.

An objective is a small callable that reads what one forward pass produced
(activations of named layers, the logits, the image itself) and returns one
score per image, shape ``(N,)``. It never touches the model: it *declares* the
layers it reads (``.layers``), ``optimize`` hooks exactly those, and a bad
layer name fails before the first step.

    >>> from cnnviz_helpers import objectives as obj
    >>> o = obj.class_logit("ostrich") - 1e-2 * obj.l2() - 1e-3 * obj.tv(beta=2)
    >>> o                                    # class_logit(9) - 0.01*l2(center=0.5) - 0.001*tv(beta=2)
    >>> o.layers                             # () : only the logits are needed
    >>> obj.channel("block4", 12).layers     # ('block4',)

Scores (maximize):
    ``class_logit(c)``   the pre-softmax score S_c (lesson 08)
    ``log_prob(c)``      log softmax_c, for attacks (lesson 12)
    ``channel(layer, k)``  mean of channel k's map (lesson 08)
    ``neuron(layer, k, i, j)`` one unit (lesson 08)
    ``layer_l2(layer)``  ||h||^2 of a layer, DeepDream (lesson 10)
    ``feature_match(layer, target)``  -||phi(x)-phi0||^2/||phi0||^2, inversion (lesson 09)
    ``content(layer, target)``  -content loss (lesson 11)
    ``style({layer: gram}, weights)``  -sum_l w_l E_l with Gram matrices (lesson 11)
Penalties (subtract ``lambda * penalty``), all computed on the image in [0,1]:
    ``l2()``, ``alpha_norm(alpha)``, ``tv(beta)``, ``blur(sigma)``
Helpers: ``gram_matrix(act)``, ``features(model, x, layers)`` (targets for
``feature_match``, ``content`` and ``style``).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from ._util import gaussian_blur

__all__ = [
    "Objective",
    "Context",
    "class_logit",
    "log_prob",
    "channel",
    "neuron",
    "layer_l2",
    "feature_match",
    "content",
    "style",
    "gram_matrix",
    "features",
    "l2",
    "alpha_norm",
    "tv",
    "blur",
    "gaussian_kernel",
]


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
        from .data import class_index

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


# ---------------------------------------------------------------- scores

def class_logit(c: int | str | Sequence[int]) -> Objective:
    """The pre-softmax score ``S_c(x)`` (logit) of class ``c`` (lesson 08, Simonyan et al.).

    ``c``: an ImageNet index or name, or one index per image of the batch.
    Maximizing the logit rather than the probability makes the image look like
    ``c`` instead of merely unlike the other classes.

    >>> class_logit("ostrich")          # class 9
    """
    ci = _classes(c)

    def fn(ctx: Context) -> torch.Tensor:
        return _pick_class(ctx.logits, ci, "class_logit")

    return Objective(fn, name=f"class_logit({_cname(ci)})", needs_logits=True)


def log_prob(c: int | str | Sequence[int]) -> Objective:
    """``log softmax(logits)_c``: the log probability of class ``c`` (attacks, lesson 12).

    ``-log_prob(label)`` is the cross-entropy loss; maximizing it is an untargeted attack.
    """
    ci = _classes(c)

    def fn(ctx: Context) -> torch.Tensor:
        return _pick_class(torch.log_softmax(ctx.logits, dim=-1), ci, "log_prob")

    return Objective(fn, name=f"log_prob({_cname(ci)})", needs_logits=True)


def _channel_of(a: torch.Tensor, k: int, layer: str) -> torch.Tensor:
    if a.dim() not in (2, 4):
        raise ValueError(f"layer {layer!r} gives shape {tuple(a.shape)}: expected (N,C,H,W) maps or (N,C) features")
    if k >= a.shape[1]:
        raise IndexError(f"channel {k} is out of range: layer {layer!r} has channels 0..{a.shape[1] - 1}")
    return a[:, k]


def channel(layer: str, k: int) -> Objective:
    """Mean activation of channel ``k`` of ``layer`` over all positions (a feature map's "neuron").

    For an ``(N,C)`` layer (fc, pool) it is unit ``k`` itself. Lesson 08.

    >>> channel("block5", 7)
    """
    layer, k = _check_layer(layer), _check_index(k, "channel")

    def fn(ctx: Context) -> torch.Tensor:
        a = _channel_of(ctx[layer], k, layer)
        return a if a.dim() == 1 else _mean_per_image(a)

    return Objective(fn, name=f"channel({layer!r}, {k})", layers=[layer])


def neuron(layer: str, k: int, i: int | None = None, j: int | None = None) -> Objective:
    """One unit: channel ``k`` at position ``(i, j)`` of ``layer`` (default: the centre, ``(H//2, W//2)``).

    On an ``(N,C)`` layer, ``neuron(layer, k)`` is unit ``k`` (no position). Lesson 08.
    """
    layer, k = _check_layer(layer), _check_index(k, "channel")
    if (i is None) != (j is None):
        raise ValueError(f"give both i and j (row, column) or neither (the centre), got i={i!r}, j={j!r}")
    if i is not None:
        i, j = _check_index(i, "row i"), _check_index(j, "column j")

    def fn(ctx: Context) -> torch.Tensor:
        a = _channel_of(ctx[layer], k, layer)
        if a.dim() == 1:
            if i is not None:
                raise ValueError(f"layer {layer!r} has no spatial positions (shape {tuple(ctx[layer].shape)}): "
                                 f"use neuron({layer!r}, {k}) without i, j")
            return a
        h, w = a.shape[-2:]
        ii, jj = (h // 2, w // 2) if i is None else (i, j)
        if not (ii < h and jj < w):
            raise IndexError(f"position ({ii}, {jj}) is outside layer {layer!r}'s {h}x{w} maps "
                             f"(rows 0..{h - 1}, columns 0..{w - 1})")
        return a[:, ii, jj]

    pos = "" if i is None else f", {i}, {j}"
    return Objective(fn, name=f"neuron({layer!r}, {k}{pos})", layers=[layer])


_REDUCTIONS = ("mean", "sum")


def _check_reduction(r: str) -> str:
    if r not in _REDUCTIONS:
        raise ValueError(f"unknown reduction {r!r}: choose one of {', '.join(_REDUCTIONS)}")
    return r


def layer_l2(layer: str, *, reduction: str = "mean") -> Objective:
    """``||h||^2`` of ``layer``'s activations h: DeepDream's objective (lesson 10).

    ``reduction="sum"``: ``sum h^2`` (its gradient w.r.t. h is ``2h``: the
    lecture's "set the gradient to h", up to a factor); ``"mean"`` (default):
    divided by the number of activations, so the size does not change the scale.
    """
    layer, reduction = _check_layer(layer), _check_reduction(reduction)
    red = _per_image if reduction == "sum" else _mean_per_image

    def fn(ctx: Context) -> torch.Tensor:
        return red(ctx[layer].pow(2))

    return Objective(fn, name=f"layer_l2({layer!r})" + ("" if reduction == "mean" else ", reduction='sum'"),
                     layers=[layer])


def _target(t: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{what} must be a tensor of activations (e.g. from features(model, x, layers)), "
                        f"got {type(t).__name__}")
    return t.detach()


def _match_shape(a: torch.Tensor, t: torch.Tensor, layer: str) -> torch.Tensor:
    if a.shape[1:] != t.shape[1:] or t.shape[0] not in (1, a.shape[0]):
        raise ValueError(f"the target for layer {layer!r} has shape {tuple(t.shape)} but the layer gives "
                         f"{tuple(a.shape)}: compute the target at the same image size")
    return t.to(a.device, a.dtype)


def feature_match(layer: str, target: torch.Tensor) -> Objective:
    """``-||phi(x) - phi0||^2 / ||phi0||^2``: inversion of a representation (lesson 09, Mahendran & Vedaldi).

    ``target``: ``phi0``, the layer's activations of the original image,
    ``(1, ...)`` or one per image. The loss is normalized by ``||phi0||^2`` as in
    the paper, so it is 1 for phi(x) = 0 and comparable across layers.
    """
    layer, t = _check_layer(layer), _target(target, "target")
    norm = _per_image(t.pow(2))
    if bool((norm == 0).any()):
        raise ValueError(f"the target of layer {layer!r} is all zeros: the normalized loss is undefined")

    def fn(ctx: Context) -> torch.Tensor:
        a = ctx[layer]
        tt = _match_shape(a, t, layer)
        return -_per_image((a - tt).pow(2)) / norm.to(a.device)

    return Objective(fn, name=f"feature_match({layer!r})", layers=[layer])


def content(layer: str, target: torch.Tensor, *, reduction: str = "mean") -> Objective:
    """``-L_content``: minus the squared distance of ``layer``'s features to ``target`` (lesson 11, Gatys et al.).

    ``reduction="sum"``: ``L = 1/2 sum (F - P)^2`` (Gatys' eq. 1); ``"mean"``
    (default): ``L = mean (F - P)^2``, independent of the layer's size.
    """
    layer, t, reduction = _check_layer(layer), _target(target, "target"), _check_reduction(reduction)

    def fn(ctx: Context) -> torch.Tensor:
        a = ctx[layer]
        d = (a - _match_shape(a, t, layer)).pow(2)
        return -(0.5 * _per_image(d) if reduction == "sum" else _mean_per_image(d))

    return Objective(fn, name=f"content({layer!r})" + ("" if reduction == "mean" else ", reduction='sum'"),
                     layers=[layer])


def gram_matrix(act: torch.Tensor) -> torch.Tensor:
    """Gram matrix ``G = V^T V / M`` of feature maps: ``(N,C,H,W) -> (N,C,C)`` (lesson 11).

    ``V`` is the ``(M, C)`` matrix of the C feature maps flattened over the
    ``M = H*W`` positions; ``G[a, b]`` is the mean over positions of
    ``F_a * F_b``. Dividing by M makes style comparable across image sizes.
    """
    if not isinstance(act, torch.Tensor) or act.dim() != 4:
        raise ValueError(f"gram_matrix needs (N,C,H,W) feature maps, got "
                         f"{tuple(act.shape) if isinstance(act, torch.Tensor) else type(act).__name__}")
    n, c, h, w = act.shape
    v = act.reshape(n, c, h * w)                      # (N, C, M): rows are V^T
    return v @ v.transpose(1, 2) / (h * w)            # (N, C, C)


def style(targets: Mapping[str, torch.Tensor], weights: Mapping[str, float] | None = None) -> Objective:
    """``-L_style = -sum_l w_l E_l`` with ``E_l = sum (G_l - A_l)^2 / (4 C_l^2)`` (lesson 11, Gatys et al.).

    ``targets``: layer -> Gram matrix ``A_l`` of the style image
    (``gram_matrix`` of its features, ``(1,C,C)`` or ``(C,C)``); ``weights``:
    layer -> ``w_l`` (default ``1/L`` each). With ``G = V^T V / M`` this ``E_l``
    equals Gatys' ``1/(4 N^2 M^2) sum (G - A)^2`` on unnormalized Grams.
    """
    if not isinstance(targets, Mapping) or not targets:
        raise ValueError("style needs a non-empty {layer: gram matrix} mapping, e.g. "
                         "{l: gram_matrix(f) for l, f in features(model, style_image, layers).items()}")
    grams = {}
    for layer, g in targets.items():
        _check_layer(layer)
        g = _target(g, f"the Gram target of layer {layer!r}")
        if g.dim() not in (2, 3) or g.shape[-1] != g.shape[-2]:
            raise ValueError(f"the Gram target of layer {layer!r} must be (C,C) or (N,C,C), got {tuple(g.shape)}")
        if g.dim() == 2:
            g = g[None]
        grams[layer] = g
    if weights is None:
        w = {layer: 1.0 / len(grams) for layer in grams}
    else:
        extra = set(weights) - set(grams)
        missing = set(grams) - set(weights)
        if extra or missing:
            raise ValueError(f"style weights must name exactly the target layers {sorted(grams)}; "
                             f"unknown: {sorted(extra)}, missing: {sorted(missing)}")
        w = {layer: float(weights[layer]) for layer in grams}

    def fn(ctx: Context) -> torch.Tensor:
        total = 0.0
        for layer, a_l in grams.items():
            g = gram_matrix(ctx[layer])
            if g.shape[-1] != a_l.shape[-1]:
                raise ValueError(f"the Gram target of layer {layer!r} is {a_l.shape[-1]}x{a_l.shape[-1]} but the "
                                 f"layer has {g.shape[-1]} channels")
            c = g.shape[-1]
            total = total + w[layer] * _per_image((g - a_l.to(g.device, g.dtype)).pow(2)) / (4 * c * c)
        return -total

    wtxt = "" if weights is None else ", weights=" + str({k: round(v, 4) for k, v in w.items()})
    return Objective(fn, name=f"style({list(grams)}{wtxt})", layers=list(grams))


def features(model: nn.Module, x: torch.Tensor, layers: str | Iterable[str]) -> dict[str, torch.Tensor]:
    """Activations of ``layers`` for images ``x`` ``(N,3,H,W)`` in [0,1], detached: the targets of
    ``feature_match``, ``content`` and (through ``gram_matrix``) ``style``. An ``x`` outside [0,1]
    (normalized, or 0..255) or of an integer dtype is refused before anything runs.

    Runs one forward pass without gradients, with in-place ReLUs switched off so
    that a convolution's output is recorded before rectification; the model is
    left exactly as found.

    >>> phi0 = features(model, photo, ["block3", "pool"])   # {"block3": (1,40,28,28), "pool": (1,1280,1,1)}
    """
    from ._checks import check_image
    from .hooks import capture, relu_rule
    from .layers import resolve_layers

    x = check_image(x, "features' x")                 # a normalized or 0..255 photo would give wrong targets
    names = [layers] if isinstance(layers, str) else list(layers)
    resolve_layers(model, names)                      # KeyError with close names, before anything runs
    x = x.to(_device(model))
    # in-place ReLUs would overwrite a recorded conv output: switch them off (restored on exit)
    with relu_rule(model, "gradient"), capture(model, names, detach=True) as rec:
        with torch.no_grad():
            model(x)
        rec.check_called()
        return {n: rec[n].clone() for n in names}


def _device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


# ---------------------------------------------------------------- penalties (subtract them)

def _check_positive(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{what} must be a positive number, got {v!r}")
    return float(v)


def l2(center: float = 0.5) -> Objective:
    """Penalty ``mean (x - center)^2`` over the pixels of each image (Simonyan's L2, lesson 08).

    ``center=0.5``: the mean colour, i.e. zero in the model's normalized input
    space. The mean (``||x - c||^2 / 3HW``) keeps λ independent of image size.
    """
    c = float(center)
    return Objective(lambda ctx: _mean_per_image((ctx.image - c).pow(2)), name=f"l2(center={_fmt(c)})")


def alpha_norm(alpha: float = 6.0, center: float = 0.5) -> Objective:
    """Penalty ``mean |x - center|^alpha``: the α-norm ``||x||_α^α`` of Mahendran & Vedaldi (lesson 09).

    A large α (6) barely touches ordinary pixels and strongly punishes extreme ones.
    """
    a, c = _check_positive(alpha, "alpha"), float(center)
    return Objective(lambda ctx: _mean_per_image((ctx.image - c).abs().pow(a)),
                     name=f"alpha_norm(alpha={_fmt(a)})")


def tv(beta: float = 2.0, *, eps: float = 1e-8) -> Objective:
    """Total-variation penalty ``mean_ij ((x[i,j+1]-x[i,j])^2 + (x[i+1,j]-x[i,j])^2 + eps)^(β/2)`` (lesson 09).

    Per channel, over the ``(H-1) x (W-1)`` positions that have both a right and
    a lower neighbour. β = 2 is the squared gradient; β < 2 lets sharp edges
    through (Mahendran & Vedaldi use β in 1..2). ``eps`` keeps the gradient
    finite on flat images when β < 2.
    """
    b = _check_positive(beta, "beta")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")

    def fn(ctx: Context) -> torch.Tensor:
        x = ctx.image
        dx = x[..., :-1, 1:] - x[..., :-1, :-1]
        dy = x[..., 1:, :-1] - x[..., :-1, :-1]
        d2 = dx.pow(2) + dy.pow(2) + eps
        return _mean_per_image(d2 if b == 2 else d2.pow(b / 2))

    return Objective(fn, name=f"tv(beta={_fmt(b)})")


def gaussian_kernel(sigma: float, *, radius: int | None = None) -> torch.Tensor:
    """A normalized 1-D Gaussian ``(2r+1,)`` with ``r = ceil(3 sigma)`` by default."""
    s = _check_positive(sigma, "sigma")
    r = int(math.ceil(3 * s)) if radius is None else int(radius)
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-t.pow(2) / (2 * s * s))
    return k / k.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return gaussian_blur(x, sigma, padding="replicate")


def blur(sigma: float = 1.0) -> Objective:
    """Penalty ``mean (x - G_σ * x)^2``: the energy the Gaussian blur would remove (lesson 08).

    The penalty form of Yosinski et al.'s "blur every few steps": it pushes
    the image towards low frequencies. Borders are replicated.
    """
    s = _check_positive(sigma, "sigma")
    return Objective(lambda ctx: _mean_per_image((ctx.image - _blur(ctx.image, s)).pow(2)),
                     name=f"blur(sigma={_fmt(s)})")
