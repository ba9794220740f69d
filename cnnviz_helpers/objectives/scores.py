"""Scores to maximize: class scores, units, channels and layers, feature and style matching."""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

from .base import Context, Objective, _check_index, _check_layer, _classes, _cname, _mean_per_image, _per_image, _pick_class


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


def _per_image_units(layer: str, units: Sequence[int], what: str):
    layer = _check_layer(layer)
    units = [_check_index(k, "channel") for k in units]
    if not units:
        raise ValueError(f"{what} needs at least one unit")
    idx = torch.tensor(units)

    def pick(ctx: Context) -> torch.Tensor:                              # (N, h, w) or (N,): unit units[b] of image b
        a = ctx[layer]
        if a.shape[0] != len(units):
            raise ValueError(f"{what}({layer!r}, ...) has {len(units)} units for a batch of {a.shape[0]} images: "
                             "one image per unit")
        if int(idx.max()) >= a.shape[1]:
            raise IndexError(f"channel {int(idx.max())} is out of range: layer {layer!r} has channels 0..{a.shape[1] - 1}")
        return a[torch.arange(len(units), device=a.device), idx.to(a.device)]

    return layer, units, pick


def neurons(layer: str, units: Sequence[int]) -> Objective:
    """Image ``b`` of the batch maximizes unit ``units[b]`` of ``layer`` at the centre of its map: one run
    for many units (lesson 01). ``neurons(layer, [k])`` is ``neuron(layer, k)``."""
    layer, units, pick = _per_image_units(layer, units, "neurons")

    def fn(ctx: Context) -> torch.Tensor:
        a = pick(ctx)
        return a if a.dim() == 1 else a[:, a.shape[-2] // 2, a.shape[-1] // 2]

    return Objective(fn, name=f"neurons({layer!r}, {units})", layers=[layer])


def channels(layer: str, units: Sequence[int]) -> Objective:
    """Image ``b`` of the batch maximizes the mean of channel ``units[b]`` over all positions: one run for
    many channels (the unit atlas). ``channels(layer, [k])`` is ``channel(layer, k)``."""
    layer, units, pick = _per_image_units(layer, units, "channels")

    def fn(ctx: Context) -> torch.Tensor:
        a = pick(ctx)
        return a if a.dim() == 1 else _mean_per_image(a)

    return Objective(fn, name=f"channels({layer!r}, {units})", layers=[layer])


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
    from .._checks import check_image
    from .._util import device_of
    from ..hooks import capture
    from ..layers import resolve_layers

    x = check_image(x, "features' x")                 # a normalized or 0..255 photo would give wrong targets
    names = [layers] if isinstance(layers, str) else list(layers)
    resolve_layers(model, names)                      # KeyError with close names, before anything runs
    x = x.to(device_of(model))
    with capture(model, names, detach=True) as rec:  # capture keeps a following in-place ReLU off its record
        with torch.no_grad():
            model(x)
        rec.check_called()
        return {n: rec[n].clone() for n in names}
