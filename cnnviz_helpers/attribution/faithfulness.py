"""Faithfulness of an attribution map (Petsiuk et al. 2018, lesson 07): deletion and insertion curves."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .._checks import check_int, check_number
from ..hooks import frozen
from .._util import device_of, gaussian_blur
from .cam import upsample_map
from .occlusion import _baseline_tensor
from .targets import _class_targets, _image

__all__ = ["FaithfulnessCurves", "deletion_insertion"]


@dataclass
class FaithfulnessCurves:
    """Deletion and insertion curves of one map: the class probability after removing (deletion)
    or adding back (insertion) the most important ``fractions`` of the pixels. AUCs by the trapezoid rule."""

    fractions: torch.Tensor
    deletion: torch.Tensor
    insertion: torch.Tensor

    @property
    def deletion_auc(self) -> float:
        return float(torch.trapezoid(self.deletion, self.fractions))

    @property
    def insertion_auc(self) -> float:
        return float(torch.trapezoid(self.insertion, self.fractions))


def deletion_insertion(
    model: nn.Module,
    x: torch.Tensor,
    target: int | str,
    attribution: torch.Tensor,
    *,
    steps: int = 20,
    baseline: float | Sequence[float] | torch.Tensor | None = None,
    blur_sigma: float = 5.0,
    batch_size: int = 16,
) -> FaithfulnessCurves:
    """Deletion and insertion curves (Petsiuk et al. 2018) of one attribution map for one image.

    Pixels are ranked by ``attribution`` (``(H,W)``; a coarser ``(h,w)`` map is
    upsampled bilinearly), highest first, ties in index order. For
    ``k = 0..steps``: *deletion* replaces the top ``k/steps`` of the pixels by
    ``baseline`` (default the model's mean colour, as in occlusion); *insertion*
    starts from the image blurred with a Gaussian of ``blur_sigma`` pixels and
    puts the top pixels back sharp. The curves hold the softmax probability of
    ``target``. A faithful map makes deletion fall fast (low AUC) and insertion
    rise fast (high AUC). Lesson 07.

    >>> c = deletion_insertion(model, x, 281, saliency(model, x, 281)[0])
    >>> c.deletion_auc, c.insertion_auc
    """
    x = _image(x)
    if x.shape[0] != 1:
        raise ValueError(f"deletion_insertion explains one image (1,3,H,W), got a batch of {x.shape[0]}")
    steps = check_int(steps, "steps", lo=1)
    blur_sigma = check_number(blur_sigma, "blur_sigma", above=0, must="a number > 0 (pixels)")
    batch_size = check_int(batch_size, "batch_size", lo=1)
    classes = _class_targets(model, target, 1)
    if classes is None:
        raise TypeError("deletion_insertion takes a class index or name as target")
    h, w = x.shape[-2:]
    if not isinstance(attribution, torch.Tensor):
        raise TypeError(f"attribution must be a tensor map (H,W), got {type(attribution).__name__}")
    a = attribution.detach().float().cpu().squeeze()
    if a.dim() != 2:
        raise ValueError(f"attribution must be one 2-D map (H,W), got shape {tuple(attribution.shape)}")
    if tuple(a.shape) != (h, w):
        a = upsample_map(a, (h, w))
    dev = device_of(model)
    xd = x.detach().to(dev)
    base = _baseline_tensor(model, xd, baseline).expand_as(xd)
    start = _blur(xd, float(blur_sigma))
    order = torch.argsort(a.flatten(), descending=True, stable=True)
    counts = [round(k * h * w / steps) for k in range(steps + 1)]
    rank = torch.empty(h * w, dtype=torch.long)
    rank[order] = torch.arange(h * w)
    rank = rank.view(1, 1, h, w).to(dev)
    c = int(classes[0])
    imgs = []
    for n in counts:
        m = (rank < n).to(xd.dtype)  # 1 on the top-n pixels
        imgs.append(xd * (1 - m) + base * m)  # deletion
    for n in counts:
        m = (rank < n).to(xd.dtype)
        imgs.append(start * (1 - m) + xd * m)  # insertion
    probs = []
    with frozen(model), torch.no_grad():
        for s in range(0, len(imgs), batch_size):
            probs.append(model(torch.cat(imgs[s:s + batch_size])).softmax(-1)[:, c])
    p = torch.cat(probs).float().cpu()
    fr = torch.tensor(counts, dtype=torch.float32) / (h * w)
    return FaithfulnessCurves(fr, p[:steps + 1], p[steps + 1:])


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``(N,3,H,W)`` (kernel 2*ceil(3 sigma)+1, reflect padding): insertion's start image."""
    return gaussian_blur(x, sigma, padding="reflect")
