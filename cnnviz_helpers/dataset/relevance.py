"""Relevance of a unit to a class, beside its activation (lesson 01, issue 15).

For channel ``c`` of a layer, a photo ``x`` and a class ``y`` (by default the photo's own label),
the **relevance** is gradient x activation summed over positions,

    R_c(x) = sum_ij A_c(x)_ij * dS_y(x)/dA_c(x)_ij        (S_y: the class logit),

computed by ``top_activations(..., relevance="label")`` in the same streaming pass as the
activation score ``m_c(x) = max_ij A_c(x)_ij``: per batch one backward of ``sum_n S_{y_n}(x_n)``
from the logits to the requested layers gives every photo's relevance at once (in eval mode
the photos of a batch do not interact). ``spearman`` compares the two orderings per unit.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["RELEVANCE_CHOICES", "spearman", "rankdata"]

RELEVANCE_CHOICES = "None, 'label' (each photo's own class: a PhotoSet), a class index or a class name"


def _target(model, src, relevance):
    """The relevance option as stored in the cache key: ``None``, ``"label"`` or a class index.
    Bad values are a clear error before any work."""
    if relevance is None:
        return None
    n = len(getattr(model, "categories", ()) or ())
    if isinstance(relevance, bool) or not isinstance(relevance, (int, np.integer, str)):
        raise TypeError(f"relevance must be {RELEVANCE_CHOICES}; got {relevance!r}")
    if isinstance(relevance, str):
        if relevance == "label":
            if not hasattr(src, "classes"):
                raise ValueError("relevance='label' needs photos with labels (a PhotoSet: each photo's own class); "
                                 f"for a tensor of images give a class index or name. Valid: {RELEVANCE_CHOICES}")
            return "label"
        if not n:
            raise ValueError(f"relevance={relevance!r}: this model has no class names; valid: {RELEVANCE_CHOICES}")
        try:
            return int(model.class_index(relevance))
        except (KeyError, ValueError, IndexError) as e:
            raise ValueError(f"unknown relevance {relevance!r}: not a class of {getattr(model, 'name', 'the model')} "
                             f"({e}); valid: {RELEVANCE_CHOICES}") from None
    i = int(relevance)
    if i < 0 or (n and i >= n):
        raise ValueError(f"relevance class index {i} is out of range: valid indices are 0..{max(n - 1, 0)} "
                         f"(or 'label', or a class name)")
    return i


def _classes(target, src, start: int, b: int) -> torch.Tensor:
    """``(b,)`` the class whose logit each photo ``start .. start+b-1`` of the batch is scored by."""
    if target == "label":
        return torch.as_tensor(list(src.classes[start:start + b]), dtype=torch.long)
    return torch.full((b,), int(target), dtype=torch.long)


def _logit_grads(out: torch.Tensor, acts: list[torch.Tensor], y: torch.Tensor) -> list[torch.Tensor]:
    """d(sum_n out[n, y_n]) / d act for every ``act`` (zeros where a layer does not reach the logits)."""
    if out is None or out.dim() != 2:
        raise ValueError(f"relevance needs a model whose output is (N, classes) logits, got "
                         f"{None if out is None else tuple(out.shape)}")
    if int(y.max()) >= out.shape[1]:
        raise ValueError(f"relevance class index {int(y.max())} is out of range: the model has {out.shape[1]} "
                         f"outputs (0..{out.shape[1] - 1})")
    with torch.enable_grad():  # the pass runs under no_grad; its graph starts at the first relevance layer
        score = out.gather(1, y.to(out.device)[:, None]).sum()
        if not score.requires_grad:
            return [torch.zeros_like(a) for a in acts]
        gs = torch.autograd.grad(score, acts, allow_unused=True)
    return [torch.zeros_like(a) if g is None else g for a, g in zip(acts, gs)]


def _relevance_maps(act: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R (B,C), flat position of the largest A*dS/dA (B,C))`` of one batch (on the CPU)."""
    p = (act.detach().float() * grad.detach().float())
    p = p.flatten(2) if p.dim() == 4 else p[:, :, None]
    return p.sum(2).cpu(), p.argmax(2).cpu()


def rankdata(a: np.ndarray | torch.Tensor) -> np.ndarray:
    """Ranks 1..N down each column of ``a`` (N,) or (N, C); tied values get the mean of their ranks
    (``scipy.stats.rankdata(method='average')``, which this is)."""
    from scipy.stats import rankdata as _scipy_rankdata

    a = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64)
    return _scipy_rankdata(a, method="average", axis=0)


def spearman(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray:
    """Spearman's rank correlation of ``a`` and ``b`` down each column: ``(C,)`` for two ``(N, C)`` tables
    (a float for two ``(N,)`` vectors): the Pearson correlation of their ranks (ties: mean ranks).
    A column that is constant in either table has no ranking: NaN, as ``scipy.stats.spearmanr``.

    >>> rho = spearman(top["late"].table, top["late"].relevance.table)   # per unit, over the photos
    """
    ra, rb = rankdata(a), rankdata(b)
    if ra.shape != rb.shape:
        raise ValueError(f"spearman needs two tables of the same shape, got {ra.shape} and {rb.shape}")
    if ra.shape[0] < 2:
        raise ValueError(f"spearman needs at least 2 rows (photos), got {ra.shape[0]}")
    ra, rb = ra - ra.mean(0), rb - rb.mean(0)
    den = np.sqrt((ra ** 2).sum(0) * (rb ** 2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(den > 0, (ra * rb).sum(0) / np.where(den > 0, den, 1), np.nan)
    return float(rho) if rho.ndim == 0 else rho
