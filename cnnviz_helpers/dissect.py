"""Network dissection (Bau, Zhou et al. 2017), the arithmetic lesson 13 and the unit atlas share.

A unit ``k``'s mask on image ``x`` is its activation map upsampled (bilinear) to the
masks' resolution and thresholded strictly above ``T_k``, the value of the unit's
``n_top``-th largest activation over all probe images and positions (the paper: the
top 0.5 %). A concept ``c``'s mask ``L_c(x)`` is given. The IoU of unit and concept is
summed over the images of the concept's pool::

    IoU_{k,c} = sum_x |M_k(x) & L_c(x)| / sum_x |M_k(x) | L_c(x)|

>>> T = thresholds([acts_photos, acts_probes])
>>> inter, msize, lsize = accumulate(acts_photos, colour_masks, T)
>>> table = iou_table([(inter, msize, lsize)])            # (C, K)
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["iou", "thresholds", "unit_masks", "accumulate", "iou_table", "dissect_logits"]


def iou(M: torch.Tensor, L: torch.Tensor) -> float:
    """IoU of boolean masks summed over images: M, L (N, ...) -> sum |M & L| / sum |M | L|."""
    return float((M & L).sum()) / float((M | L).sum())


def thresholds(pools: Sequence[torch.Tensor], top: float = 0.005, n_top: int | None = None,
               chunk: int = 64) -> torch.Tensor:
    """T_k per unit: the ``n_top``-th largest of its activations over every image of every pool and position.

    ``pools``: activations (N_i, C, h, w) (or (N_i, C)) of the same layer. ``n_top``
    defaults to ``ceil(top * total values)`` (at least 1). Units are taken ``chunk``
    at a time so that large maps (VGG) never exist in float32 all at once.
    """
    pools = [p if p.dim() == 4 else p[:, :, None, None] for p in pools]
    C = pools[0].shape[1]
    total = sum(p.shape[0] for p in pools) * pools[0][0, 0].numel()
    n = n_top if n_top is not None else max(1, math.ceil(top * total))
    if not 1 <= n <= total:
        raise ValueError(f"n_top = {n} is not between 1 and the {total} values per unit")
    out = []
    for c in range(0, C, chunk):
        flat = torch.cat([p[:, c:c + chunk] for p in pools]).float().transpose(0, 1).flatten(1)
        out.append(flat.topk(n, dim=1).values[:, -1])
    return torch.cat(out)


def unit_masks(A: torch.Tensor, T: torch.Tensor, res: int) -> torch.Tensor:
    """(B, C, h, w) activations -> (B, C, res*res) bool: upsampled (bilinear, align_corners=False), > T_k."""
    if A.dim() == 2:
        A = A[:, :, None, None]
    up = F.interpolate(A.float(), size=(res, res), mode="bilinear", align_corners=False)
    return (up > T.to(up)[None, :, None, None]).flatten(2)


def accumulate(A: torch.Tensor, L: torch.Tensor, T: torch.Tensor, *, per_image: bool = True, bs: int = 64):
    """Overlaps of every unit with every concept on one pool of images.

    ``A`` (B, C, h, w) activations, ``L`` (B, K, res, res) bool concept masks, ``T`` (C,).
    Returns ``(inter, msize, lsize)``: |M_k & L_c| (B, C, K), |M_k| (B, C), |L_c| (B, K)
    per image, or with ``per_image=False`` their sums over the images ((C, K), (C,), (K,)),
    which needs no (B, C, K) array.
    """
    res = L.shape[-1]
    inter, msize, lsize = [], [], []
    for s in range(0, len(A), bs):
        M = unit_masks(A[s:s + bs], T, res).float()                      # (b, C, P)
        Lf = L[s:s + bs].flatten(2).float()                              # (b, K, P)
        if per_image:
            inter.append(torch.einsum("bcp,bkp->bck", M, Lf)); msize.append(M.sum(2)); lsize.append(Lf.sum(2))
        else:
            inter.append(torch.einsum("bcp,bkp->ck", M, Lf)); msize.append(M.sum((0, 2))); lsize.append(Lf.sum((0, 2)))
    if per_image:
        return torch.cat(inter), torch.cat(msize), torch.cat(lsize)
    return sum(inter), sum(msize), sum(lsize)


def iou_table(parts) -> torch.Tensor:
    """(C, K_total) IoU from ``accumulate`` results, one per concept pool (concatenated along K)."""
    cols = []
    for inter, msize, lsize in parts:
        if inter.dim() == 3:                                             # per image: sum over the pool
            inter, msize, lsize = inter.sum(0), msize.sum(0), lsize.sum(0)
        union = msize[:, None] + lsize[None] - inter
        cols.append(inter / union.clamp(min=1))
    return torch.cat(cols, 1)


def dissect_logits(logits: torch.Tensor, classes: Sequence[int]) -> dict:
    """Dissection's self-check: the logit units of the photos' classes, with each photo as its class's concept.

    ``logits`` (N, 1000), ``classes`` (N,) distinct: photo i is the one image of concept
    ``classes[i]``, its mask covering the whole image. A logit's map is one value per image,
    so a mask is all or nothing and any resolution gives the same IoU (we use 1x1). The
    paper's top 0.5 % would leave several photos above T_k, tied at the same IoU; here
    ``T_k`` is the unit's second-largest value (``n_top=2``), so M_k is its top photo and
    IoU_{k,c} is 1 for that photo's class and 0 for all others. Returns ``dict(IoU (K, K),
    best (K,) concept index per unit, own (K,) bool: best == its own class, fraction)``.
    """
    classes = torch.as_tensor(list(classes))
    if len(set(classes.tolist())) != len(classes):
        raise ValueError("one photo per class: the classes must be distinct")
    A = logits.float()[:, classes]                                       # (N, K): the K logits of the photos' classes
    K = len(classes)
    L = torch.eye(K, dtype=torch.bool)[:, :, None, None]                 # photo i = concept i, whole image
    T = thresholds([A], n_top=2)
    table = iou_table([accumulate(A[:, :, None, None], L, T, per_image=False)])
    best_iou, best = table.max(1)
    own = (best == torch.arange(K)) & (best_iou > 0)
    return dict(IoU=table, best=best, best_iou=best_iou, own=own, fraction=float(own.float().mean()), T=T)
