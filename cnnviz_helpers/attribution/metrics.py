"""How good is an explanation? One metric from each family that evaluation toolkits use (lesson 07's
report card; faithfulness is ``faithfulness.deletion_insertion``, randomization of the parameters
``sanity.cascading_randomization``):

- robustness: ``max_sensitivity`` (Yeh et al. 2019), the largest relative change of the explanation
  under small uniform input noise;
- complexity: ``gini`` (the Gini index of |attribution|, Chalasani et al. 2020): 0 for a uniform map,
  1 - 1/n for a map with one nonzero entry;
- randomization: ``random_logit`` (Sixt et al. 2020), the rank correlation between the explanation
  of the class and that of a random other class (a class-sensitive method scores low);
- axioms: ``completeness_gap`` (``|Σ a - (S(x) - S(x0))|``, zero for integrated gradients) and
  ``input_invariance`` (Kindermans et al. 2017: shift the input by a constant and let the model
  undo it; a method that changes is not input invariant);
- localization: ``paste`` (an object photo into another photo's background at a known box) and
  ``pointing_game`` (Zhang et al. 2018: is the map's maximum inside the box, within 15 pixels?).

An *explainer* is a function ``explain(model, x, target) -> (N, ...)`` maps, e.g.
``lambda m, x, t: A.saliency(m, x, t)``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .._checks import check_int, check_number
from .sanity import rank_correlation
from .targets import _class_targets, _image, class_scores

__all__ = ["gini", "max_sensitivity", "random_logit", "completeness_gap", "Shifted", "input_invariance",
           "paste", "pointing_game"]

Explainer = Callable[[nn.Module, torch.Tensor, object], torch.Tensor]


def gini(a: torch.Tensor) -> torch.Tensor:
    """The Gini index of ``|a|`` per map, ``(N,)`` in [0, 1): ``1 - 2 Σ_k (c_k / |c|_1) (n - k + 1/2) / n``
    with ``c`` the sorted entries (ascending). High = sparse (a few entries carry the attribution)."""
    c = a.detach().flatten(1).abs().double().sort(1).values
    n = c.shape[1]
    k = torch.arange(1, n + 1, dtype=torch.float64, device=c.device)
    total = c.sum(1, keepdim=True)
    g = 1 - 2 * ((c / total.clamp(min=1e-300)) * (n - k + 0.5) / n).sum(1)
    return torch.where(total[:, 0] > 0, g, torch.zeros_like(g)).float()


def max_sensitivity(explain: Explainer, model: nn.Module, x: torch.Tensor, target, *, radius: float = 0.02,
                    samples: int = 8, generator: torch.Generator | None = None) -> torch.Tensor:
    """``max_j |e(x + δ_j) - e(x)|_2 / |e(x)|_2`` per image, ``(N,)``, δ_j uniform in ``[-radius, radius]``
    per pixel (clipped to [0,1]); ``samples`` draws from ``generator``. 0: the explanation does not move."""
    radius = check_number(radius, "radius", above=0, hi=1)
    samples = check_int(samples, "samples", lo=1)
    x = _image(x)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    base = explain(model, x, target).detach().flatten(1)
    norm = base.norm(dim=1).clamp(min=1e-12)
    worst = torch.zeros(x.shape[0])
    for _ in range(samples):
        d = (torch.rand(x.shape, generator=g) * 2 - 1) * radius
        e = explain(model, (x + d.to(x.device)).clamp(0, 1), target).detach().flatten(1)
        worst = torch.maximum(worst, ((e - base).norm(dim=1) / norm).cpu())
    return worst


def random_logit(explain: Explainer, model: nn.Module, x: torch.Tensor, target, *,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(correlation (N,), other classes (N,))``: the rank correlation of |e(x, c)| with |e(x, c')| for
    a random other class ``c'`` per image (drawn from ``generator``). Near 1: the map ignores the class."""
    x = _image(x)
    classes = _class_targets(model, target, x.shape[0])
    if classes is None:
        raise TypeError("random_logit compares class explanations: pass class indices or names")
    n_classes = class_scores(model, x[:1]).shape[1]
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    other = (classes.cpu() + torch.randint(1, n_classes, (x.shape[0],), generator=g)) % n_classes
    a, b = explain(model, x, classes), explain(model, x, other.to(classes.device))
    return torch.tensor([rank_correlation(a[i], b[i]) for i in range(x.shape[0])]), other


def completeness_gap(model: nn.Module, x: torch.Tensor, target, attribution: torch.Tensor, *,
                     baseline: torch.Tensor | float = 0.0) -> torch.Tensor:
    """``|Σ_pixels a - (S(x) - S(x0))|`` per image, ``(N,)``, relative to ``|S(x) - S(x0)|``; ``x0`` the
    baseline (0.0: black). Integrated gradients: ~0 by its axiom; gradient x input: not in general."""
    x = _image(x)
    classes = _class_targets(model, target, x.shape[0])
    if classes is None:
        raise TypeError("completeness_gap is about class scores: pass class indices or names")
    x0 = torch.full_like(x, float(baseline)) if not isinstance(baseline, torch.Tensor) else baseline.to(x)
    if attribution.shape != x.shape:
        raise ValueError(f"attribution has shape {tuple(attribution.shape)}, the images {tuple(x.shape)}")
    s = class_scores(model, torch.cat([x, x0]))
    idx = classes.to(s.device)
    diff = (s[: x.shape[0]].gather(1, idx[:, None]) - s[x.shape[0]:].gather(1, idx[:, None]))[:, 0].cpu()
    total = attribution.detach().flatten(1).sum(1).cpu().double()
    return ((total - diff.double()).abs() / diff.double().abs().clamp(min=1e-12)).float()


class Shifted(nn.Module):
    """``model`` behind a constant input shift: ``Shifted(model, c)(x + c) == model(x)`` exactly
    (Kindermans et al.'s input-invariance test; the shift is undone before the model sees the image)."""

    def __init__(self, model: nn.Module, shift: float) -> None:
        super().__init__()
        self.model = model
        self.shift = float(shift)
        self.categories = getattr(model, "categories", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x - self.shift)


def input_invariance(explain: Explainer, model: nn.Module, x: torch.Tensor, target, *,
                     shift: float = 0.1) -> torch.Tensor:
    """``|e(model, x) - e(Shifted(model, c), x + c)|_2 / |e(model, x)|_2`` per image, ``(N,)``: 0 for an
    input-invariant method. ``x + shift`` must stay in [0,1] (darken the photos first, e.g. ``0.9 * x``)."""
    x = _image(x)
    shift = check_number(shift, "shift", above=0, hi=1)
    if float(x.max()) + shift > 1:
        raise ValueError(f"x + shift leaves [0,1] (max {float(x.max()) + shift:.3g}): scale the images first, "
                         f"e.g. input_invariance(..., (1 - {shift}) * x, ...)")
    a = explain(model, x, target).detach().flatten(1)
    b = explain(Shifted(model, shift), x + shift, target).detach().flatten(1)
    return ((a - b).norm(dim=1) / a.norm(dim=1).clamp(min=1e-12)).cpu()


def paste(obj: torch.Tensor, background: torch.Tensor, *, top: int, left: int,
          size: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """``(composite (3,H,W), box (top, left, bottom, right))``: ``obj`` ``(3,h,w)`` resized to ``size`` x
    ``size`` and pasted into ``background`` ``(3,H,W)`` at (``top``, ``left``); the box is where it went."""
    import torch.nn.functional as F

    if obj.dim() != 3 or background.dim() != 3:
        raise ValueError(f"paste takes one object (3,h,w) and one background (3,H,W), got shapes "
                         f"{tuple(obj.shape)} and {tuple(background.shape)}")
    H, W = background.shape[-2:]
    size = check_int(size, "size", lo=1)
    top, left = check_int(top, "top", lo=0), check_int(left, "left", lo=0)
    if top + size > H or left + size > W:
        raise ValueError(f"a {size}x{size} object at ({top}, {left}) does not fit in a {H}x{W} background")
    small = F.interpolate(obj[None].float(), size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)[0].clamp(0, 1)
    out = background.clone()
    out[:, top:top + size, left:left + size] = small.to(out)
    return out, (top, left, top + size, left + size)


def pointing_game(maps: torch.Tensor, boxes: Sequence[tuple[int, int, int, int]], *,
                  tolerance: int = 15) -> torch.Tensor:
    """Hits ``(N,)`` bool: the maximum of each map ``(N,H,W)`` (in image pixels) lies within ``tolerance``
    pixels of its box ``(top, left, bottom, right)`` (bottom/right exclusive), as in Zhang et al. 2018."""
    if maps.dim() != 3 or len(boxes) != maps.shape[0]:
        raise ValueError(f"pointing_game takes maps (N,H,W) and N boxes, got {tuple(maps.shape)} and "
                         f"{len(boxes)} boxes")
    tolerance = check_int(tolerance, "tolerance", lo=0)
    W = maps.shape[-1]
    flat = maps.detach().flatten(1).argmax(1).cpu()
    hits = []
    for (r, c), (t, l, b, rr) in zip(zip((flat // W).tolist(), (flat % W).tolist()), boxes):
        dr = max(t - r, 0, r - (b - 1))
        dc = max(l - c, 0, c - (rr - 1))
        hits.append(dr * dr + dc * dc <= tolerance * tolerance)
    return torch.tensor(hits)
