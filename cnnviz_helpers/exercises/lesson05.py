"""Checks of lesson 05's exercises (saliency maps, notebooks/05_saliency.md).

The references are independent of the student's route: scipy's Spearman correlation,
the receptive field computed from the layers' kernels and strides, and properties
that the saliency map max_k |w_k| must have.
"""
from __future__ import annotations

import torch

from . import Wrong, exercise
from ._answers import number

__all__ = ["check_1", "check_2", "check_3", "check_4"]


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    from scipy.stats import spearmanr
    return float(spearmanr(a.flatten().double().numpy(), b.flatten().double().numpy()).statistic)


@exercise("05.1", "the Spearman rank correlation of the top-1 and top-2 saliency maps")
def check_1(answer, *, s1, s2, w1, w2):
    r = number(answer, "a rank correlation")
    if not -1 - 1e-9 <= r <= 1 + 1e-9:
        raise Wrong(f"{r:.3f} is no correlation: correlations lie in [-1, 1]")
    want = _spearman(s1, s2)                                # scipy's Spearman on the two maps
    if abs(r - want) < 1e-6:
        return
    if abs(r - 1) < 1e-9:
        raise Wrong("1.0: you compared a map with itself; s1 and s2 are the maps of two different classes")
    from scipy.stats import pearsonr
    if abs(r - float(pearsonr(s1.flatten().numpy(), s2.flatten().numpy()).statistic)) < 1e-5:
        raise Wrong("that is Pearson's correlation of the values; Spearman's correlates their ranks "
                    "(rankdata first, or rank_correlation)")
    if abs(r - _spearman(w1, w2)) < 1e-5:
        raise Wrong("you correlated the signed gradients (3, H, W), not the saliency maps max_k |w_k| (H, W)")
    raise Wrong(f"{r:.4f}, but the Spearman correlation of the two saliency maps is {want:.4f}")


@exercise("05.2", "the box (top, left, bottom, right) of the pixels with a nonzero gradient")
def check_2(answer, *, model, layer, unit, size):
    if not isinstance(answer, (tuple, list)) or len(answer) != 4:
        raise Wrong(f"give four numbers (top, left, bottom, right), got {answer!r}")
    try:
        box = tuple(int(v) for v in answer)
    except (TypeError, ValueError):
        raise Wrong(f"the box's four entries should be pixel indices (integers), got {answer!r}") from None
    from ..layers import receptive_field
    rf = receptive_field(model, layer).clipped_box(*unit, *size)    # from kernels and strides alone
    top, left, bottom, right = rf
    if box == rf:
        return
    if box == (left, top, right, bottom):
        raise Wrong("rows and columns swapped: the order is (top, left, bottom, right), rows first")
    if box == (top, left, bottom + 1, right + 1):
        raise Wrong("off by one: bottom and right are the last nonzero row and column (inclusive), "
                    "not one past them")
    if box == (top, left, bottom - top + 1, right - left + 1):
        raise Wrong("that is (top, left, height, width): give the bottom row and the right column instead")
    if box[0] > top and box[2] <= bottom or box[1] > left and box[3] <= right:
        raise Wrong("your box is too small: did you keep only positive gradients? Negative ones count "
                    "too: test |g| > 0 (max over the colour channels)")
    raise Wrong(f"{box}: a gradient is nonzero only inside the unit's receptive field, and here it fills it")


@exercise("05.3", "the saliency map of the goldfinch: max over RGB of |gradient| per pixel")
def check_3(answer, *, w):
    grad = w[0] if w.dim() == 4 else w                      # (3, H, W), signed
    h, wd = grad.shape[-2:]
    if not isinstance(answer, torch.Tensor):
        raise Wrong(f"the map should be a tensor of shape ({h}, {wd}), got {type(answer).__name__}")
    a = answer.detach()
    if a.dim() == 3 and a.shape[0] == 1:
        a = a[0]
    if tuple(a.shape) == (3, h, wd):
        raise Wrong(f"shape (3, {h}, {wd}): you kept the colour axis; a saliency map has one value per pixel, "
                    f"reduce axis 0 (R, G, B)")
    if tuple(a.shape) != (h, wd):
        raise Wrong(f"shape {tuple(a.shape)}, expected ({h}, {wd}) (rows, columns): reduce the colour axis, "
                    f"axis 0 of w[0], not a spatial one")
    if bool((a < 0).any()):
        raise Wrong("negative values: a saliency map is a magnitude; take the absolute value before the max")
    mags = grad.abs()
    if torch.allclose(a, mags.sum(0), rtol=1e-5, atol=1e-9):
        raise Wrong("that is the sum over R, G, B; Simonyan et al. take the largest magnitude, max_k |w_k|")
    if torch.allclose(a, mags.mean(0), rtol=1e-5, atol=1e-9):
        raise Wrong("that is the mean over R, G, B; Simonyan et al. take the largest magnitude, max_k |w_k|")
    # the defining properties, pixel by pixel: no channel is larger, and one channel equals it
    covers = bool((a[None] >= mags - 1e-9).all())
    attained = bool(((mags - a[None]).abs() <= 1e-6 * (1 + a[None])).any(0).all())
    if covers and attained:
        return
    if torch.allclose(a, grad.amax(0).abs(), rtol=1e-5, atol=1e-9):
        raise Wrong("max, then abs: a large negative gradient is lost that way; take |w| first, then the max")
    if not covers:
        raise Wrong("at some pixels a channel's |gradient| is larger than your map: take the max over the channels")
    raise Wrong("at some pixels your value is none of the three channels' |gradient|: max_k |w_k| is one of them")


_DIRECTIONS = ("closer", "further")


@exercise("05.4", "predict whether SmoothGrad with sigma 0.5 is closer to or further from the plain saliency")
def check_4(prediction, *, r_small, r_big):
    if not isinstance(prediction, str) or prediction.strip().lower() not in _DIRECTIONS + ("farther",):
        raise Wrong(f'answer with the string "closer" or "further", got {prediction!r}')
    guess = "further" if prediction.strip().lower() in ("further", "farther") else "closer"
    fact = "further" if r_big < r_small else "closer"
    if guess != fact:
        raise Wrong(f"measured: rank correlation with the plain saliency {r_small:.3f} with the smaller sigma "
                    f"and {r_big:.3f} with the larger one. "
                    + ("More noise averages the gradient over a wider neighbourhood of the image: the "
                       "pixel-to-pixel detail of the plain gradient is smoothed away."
                       if fact == "further" else
                       "Here the wider average kept the plain gradient's ranking better; the effect of sigma "
                       "depends on the photo and on the number of samples."))
