"""Sanity checks of saliency maps (Adebayo et al. 2018, lesson 07): model randomization and rank correlation."""
from __future__ import annotations

import copy
from typing import Iterator, Sequence

import torch
from torch import nn

from .._names import resolve_layer

__all__ = ["cascading_randomization", "rank_correlation"]


def cascading_randomization(
    model: nn.Module,
    layers: Sequence[str],
    *,
    seed: int = 0,
) -> Iterator[tuple[str, nn.Module]]:
    """Adebayo et al. 2018's model randomization test, cascading from the top.

    ``layers`` from the top (e.g. ``["fc", "head", "block7", ...]``). Yields
    ``(layer, randomized)`` after re-initializing that layer *and all above it*
    in one deep copy of the model (the same copy, further randomized at each
    step: do not keep references across steps). Every parameter of a
    randomized layer is replaced by Gaussian noise with the trained tensor's
    mean and standard deviation (so activations keep their scale); BatchNorm
    running statistics are kept. ``model`` itself is never modified.
    """
    if isinstance(layers, str) or not layers:
        raise ValueError(f"layers must be a non-empty list of layer names from the top, got {layers!r}")
    resolved = [resolve_layer(model, n) for n in layers]  # validate all first
    g = torch.Generator().manual_seed(seed)
    rnd = copy.deepcopy(model)
    for name, (dotted, _) in zip(layers, resolved):
        mod = rnd.get_submodule(dotted)
        with torch.no_grad():
            for p in mod.parameters():
                if p.numel() > 1:
                    mu, sd = float(p.mean()), float(p.std())
                else:
                    mu, sd = float(p.mean()), 0.0
                p.copy_((torch.randn(p.shape, generator=g) * sd + mu).to(p.device, p.dtype))
        yield name, rnd


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of a 1-D tensor, ties given their average rank (``scipy.stats.rankdata``)."""
    from scipy.stats import rankdata

    return torch.from_numpy(rankdata(v.numpy(), method="average"))


def rank_correlation(a: torch.Tensor, b: torch.Tensor, *, absolute: bool = True) -> float:
    """Spearman rank correlation of two attribution maps of the same shape, in [-1, 1].

    ``absolute=True`` compares |a| with |b| (Adebayo et al.: a map's sign is often arbitrary).
    Ties share their average rank.
    """
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a = a.detach().flatten().double().cpu()
    b = b.detach().flatten().double().cpu()
    if absolute:
        a, b = a.abs(), b.abs()
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / den if den > 0 else 0.0
