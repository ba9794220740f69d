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

Broden (the paper's labelled images) is not available offline, so the course builds the
concept masks it can make itself: every photo pixel named by its nearest of 11 colour
prototypes in CIELAB (``colour_masks``), and generated texture probes whose masks are known
by construction (``texture_probes``). ``dissect`` puts the pieces together for one layer.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["iou", "thresholds", "unit_masks", "accumulate", "iou_table", "dissect_logits", "COLOUR_NAMES",
           "PROTOTYPES", "TEXTURES", "CONCEPTS", "srgb_to_lab", "colour_masks", "texture_probe", "texture_probes",
           "dissect", "DETECTOR_IOU"]

COLOUR_NAMES = ["black", "blue", "brown", "grey", "green", "orange", "pink", "purple", "red", "white", "yellow"]
PROTOTYPES = torch.tensor([[0, 0, 0], [30, 80, 200], [120, 75, 40], [128, 128, 128], [50, 140, 50], [240, 140, 30],
                           [240, 150, 180], [120, 50, 140], [200, 30, 30], [245, 245, 245], [240, 220, 40]]) / 255
TEXTURES = ["stripes 0°", "stripes 45°", "stripes 90°", "stripes 135°", "dots", "checkerboard", "grid", "waves"]
CONCEPTS = COLOUR_NAMES + TEXTURES
DETECTOR_IOU = 0.04                      # the paper's threshold: a unit is a detector of its best concept above it


def iou(M: torch.Tensor, L: torch.Tensor) -> float:
    """IoU of boolean masks summed over images: M, L (N, ...) -> sum |M & L| / sum |M | L|."""
    return float((M & L).sum()) / float((M | L).sum())


def thresholds(pools: Sequence[torch.Tensor], top: float = 0.005, n_top: int | None = None,
               chunk: int = 64) -> torch.Tensor:
    """T_k per unit: the ``n_top``-th largest of its activations over every image of every pool and position.

    ``pools``: activations (N_i, C, h_i, w_i) (or (N_i, C)) of the same layer. ``n_top``
    defaults to ``ceil(top * total values)`` (at least 1). Units are taken ``chunk``
    at a time so that large maps (VGG) never exist in float32 all at once.
    """
    pools = [p if p.dim() == 4 else p[:, :, None, None] for p in pools]
    C = pools[0].shape[1]
    if any(p.shape[1] != C for p in pools):
        raise ValueError(f"the pools have {[p.shape[1] for p in pools]} channels: they must be the same layer")
    total = sum(p[:, 0].numel() for p in pools)                          # pools may differ in map size
    n = n_top if n_top is not None else max(1, math.ceil(top * total))
    if not 1 <= n <= total:
        raise ValueError(f"n_top = {n} is not between 1 and the {total} values per unit")
    out = []
    for c in range(0, C, chunk):
        flat = torch.cat([p[:, c:c + chunk].float().transpose(0, 1).flatten(1) for p in pools], 1)
        out.append(flat.topk(n, dim=1).values[:, -1])
    return torch.cat(out)


def unit_masks(A: torch.Tensor, T: torch.Tensor, res: int) -> torch.Tensor:
    """(B, C, h, w) activations -> (B, C, res*res) bool: upsampled (bilinear, align_corners=False), > T_k."""
    if A.dim() == 2:
        A = A[:, :, None, None]
    up = F.interpolate(A.float(), size=(res, res), mode="bilinear", align_corners=False)
    return (up > T.to(up)[None, :, None, None]).flatten(2)


def accumulate(A: torch.Tensor, L: torch.Tensor, T: torch.Tensor, *, per_image: bool = True, bs: int | None = None):
    """Overlaps of every unit with every concept on one pool of images.

    ``A`` (B, C, h, w) activations, ``L`` (B, K, res, res) bool concept masks, ``T`` (C,).
    Returns ``(inter, msize, lsize)``: |M_k & L_c| (B, C, K), |M_k| (B, C), |L_c| (B, K)
    per image, or with ``per_image=False`` their sums over the images ((C, K), (C,), (K,)),
    which needs no (B, C, K) array. ``bs`` images at a time (default: as many as keep the float
    masks (bs, C, res*res) near 128 MB: VGG's and Lite0's late layers have hundreds of units).
    """
    res = L.shape[-1]
    if bs is None:
        bs = max(1, min(64, int(32e6 // max(1, A.shape[1] * res * res))))
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


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3) sRGB in [0,1] -> CIELAB (D65), the standard sRGB -> XYZ -> L*a*b* formulas."""
    lin = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = torch.tensor([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = lin @ m.T / torch.tensor([0.95047, 1.0, 1.08883])
    d = 6 / 29
    f = torch.where(xyz > d ** 3, xyz.clamp(min=1e-12) ** (1 / 3), xyz / (3 * d * d) + 4 / 29)
    return torch.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def colour_masks(imgs: torch.Tensor, bs: int = 64) -> torch.Tensor:
    """(N,3,H,W) in [0,1] -> (N, 11, H, W) bool: each pixel labelled with its nearest colour name (CIELAB)."""
    if imgs.dim() != 4 or imgs.shape[1] != 3:
        raise ValueError(f"colour_masks expects (N, 3, H, W) images in [0, 1], got shape {tuple(imgs.shape)}")
    protos = srgb_to_lab(PROTOTYPES)
    out = []
    for s in range(0, len(imgs), bs):                                    # in batches: cdist is N*H*W x 11
        lab = srgb_to_lab(imgs[s:s + bs].float().permute(0, 2, 3, 1))   # (b, H, W, 3)
        idx = torch.cdist(lab.reshape(-1, 3), protos).argmin(1).view(lab.shape[:3])
        out.append(F.one_hot(idx, len(COLOUR_NAMES)).permute(0, 3, 1, 2).bool())
    return torch.cat(out)


def texture_probe(concept: str, g: torch.Generator, size: int = 224) -> tuple[torch.Tensor, torch.Tensor]:
    """One generated probe: (3, S, S) image in [0,1] with an elliptic textured region, and that region's (S, S) mask.

    ``concept``: one of ``TEXTURES``; the period (10-28 px), phase, colours and ellipse are drawn from ``g``.
    """
    if concept not in TEXTURES:
        raise ValueError(f"unknown texture {concept!r}: choose one of {TEXTURES}")
    r = lambda *shape: torch.rand(*shape, generator=g)                   # noqa: E731
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    p = 10 + 18 * float(r(1))                                            # period in pixels
    phase = float(r(1)) * p
    if concept.startswith("stripes"):
        th = np.deg2rad(float(concept.split()[1][:-1]))
        on = ((yy * np.cos(th) - xx * np.sin(th) + phase) % p) < p / 2   # bands running at angle th
    elif concept == "dots":
        on = ((xx + phase) % p - p / 2) ** 2 + ((yy + phase) % p - p / 2) ** 2 < (0.28 * p) ** 2
    elif concept == "checkerboard":
        on = (((xx + phase) // (p / 2)) + ((yy + phase) // (p / 2))) % 2 == 1
    elif concept == "grid":
        on = (((xx + phase) % p) < 0.22 * p) | (((yy + phase) % p) < 0.22 * p)
    else:  # waves
        on = ((yy + 0.15 * size * torch.sin(2 * np.pi * xx / (2.5 * p)) + phase) % p) < p / 2
    c1, c2 = r(3), r(3)
    while float((c1 - c2).abs().sum()) < 0.8:                            # two contrasting colours
        c2 = r(3)
    texture = torch.where(on, c1[:, None, None], c2[:, None, None])
    background = (r(3)[:, None, None] * 0.8 + 0.1 + 0.03 * torch.randn(3, size, size, generator=g)).clamp(0, 1)
    cy, cx = (0.3 + 0.4 * r(2)) * size                                   # an ellipse, 20-45% of the side
    ay, ax = (0.2 + 0.25 * r(2)) * size
    mask = ((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 <= 1
    return torch.where(mask, texture, background), mask


def texture_probes(per_texture: int, *, seed: int = 0, size: int = 224):
    """``per_texture`` probes of every texture, drawn in order from one seeded generator.

    Returns ``(images (T,3,S,S), masks (T,S,S) bool, concept (T,) index into TEXTURES)``.
    """
    if int(per_texture) < 1:
        raise ValueError(f"per_texture must be at least 1, got {per_texture!r}")
    g = torch.Generator().manual_seed(seed)
    imgs, masks, concept = [], [], []
    for ci, c in enumerate(TEXTURES):
        for _ in range(int(per_texture)):
            im, m = texture_probe(c, g, size)
            imgs.append(im); masks.append(m); concept.append(ci)
    return torch.stack(imgs), torch.stack(masks), torch.tensor(concept)


def dissect(A_photos: torch.Tensor, A_probes: torch.Tensor, L_colour: torch.Tensor, L_texture: torch.Tensor) -> dict:
    """Dissect one layer: activations on the photos ``A_photos`` (N, C, h, w) and on the texture probes
    ``A_probes`` (T, C, h, w); concept masks ``L_colour`` (N, 11, R, R) and ``L_texture`` (T, 8, R, R) bool.

    ``T_k`` comes from both pools; colour IoUs are summed over the photos, texture IoUs over the probes.
    Returns ``dict(T (C,), IoU (C, 19), best_iou (C,), best_c (C,), detector (C,) bool (IoU > 0.04),
    I_ph (N, C, 11), I_tx (T, C, 8): per-image overlaps, mask_share: mean |M_k(x)| / pixels on the photos)``.
    """
    if A_photos.shape[1] != A_probes.shape[1]:
        raise ValueError(f"photos and probes give {A_photos.shape[1]} and {A_probes.shape[1]} channels: the same layer?")
    T = thresholds([A_photos, A_probes])
    I_ph, M_ph, L_ph = accumulate(A_photos, L_colour, T)
    I_tx, M_tx, L_tx = accumulate(A_probes, L_texture, T)
    IoU = iou_table([(I_ph, M_ph, L_ph), (I_tx, M_tx, L_tx)])
    best_iou, best_c = IoU.max(1)
    res = L_colour.shape[-1]
    mask_share = float(M_ph.sum() / (len(A_photos) * res * res * A_photos.shape[1]))
    return dict(T=T, IoU=IoU, best_iou=best_iou, best_c=best_c, detector=best_iou > DETECTOR_IOU,
                I_ph=I_ph, I_tx=I_tx, mask_share=mask_share)
