"""Checks of lesson 11 (style transfer): Gram matrices forget positions, style losses, pixel Grams.

Every check recomputes the fact in float64 numpy, from the definitions (not with the
course's ``gram_matrix`` or ``obj.style``), and names the usual slip when the answer
differs.
"""
from __future__ import annotations

import numpy as np
import torch

from . import Wrong, exercise
from ._answers import number

__all__ = ["check_1", "check_2", "check_3", "check_4", "number", "style_loss_numpy"]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _close(a: float, b: float, rtol: float = 1e-3) -> bool:
    return abs(a - b) <= rtol * max(abs(b), 1e-12)


def _painting_name(value, names, what: str) -> str:
    if not isinstance(value, str):
        raise Wrong(f"{what} should be the painting's key, one of {list(names)}, got {type(value).__name__}")
    if value not in names:
        raise Wrong(f"{value!r} is not a key of STYLES: answer one of {list(names)} (the key, not the title)")
    return value


def _gram_un(F: np.ndarray) -> np.ndarray:
    """Un-normalized Gram of a (C, M) matrix: sum over positions of F[:, k] F[:, k]^T."""
    return F @ F.T


@exercise("11.2", "shuffle the positions of block2's maps; the Gram change and the content distance")
def check_2(shuffled, gram_change, content_change, *, features, perm):
    f = _np(features[0]).reshape(features.shape[1], -1)                 # (C, M)
    if not isinstance(shuffled, torch.Tensor):
        raise Wrong(f"`shuffled` should be a tensor like the features, got {type(shuffled).__name__}")
    if tuple(shuffled.shape) != tuple(features.shape):
        raise Wrong(f"`shuffled` has shape {tuple(shuffled.shape)}; expected {tuple(features.shape)} "
                    "(1 image, C channels, H, W): reshape the permuted (1, C, M) back to the maps' shape")
    s = _np(shuffled[0]).reshape(f.shape)
    p = perm.cpu().numpy()
    if np.allclose(s, f):
        raise Wrong("`shuffled` equals the original maps: index the M positions with `perm`")
    if not (np.allclose(s, f[:, p]) or np.allclose(s[:, p], f)):
        if np.allclose(np.sort(s, axis=None), np.sort(f, axis=None)) and not np.allclose(np.sort(s, 1), np.sort(f, 1)):
            raise Wrong("values moved between channels: permute only the positions (the last axis of a "
                        "(1, C, M) view), never the channels")
        raise Wrong("`shuffled` is not the maps with their positions permuted by `perm`: flatten H and W "
                    "into one axis of M positions and apply the same `perm` to every channel")
    g_change = number(gram_change, "`gram_change`")
    c_change = number(content_change, "`content_change`")
    scale = float(np.abs(_gram_un(f)).max()) / f.shape[1]
    if g_change < 0:
        raise Wrong("`gram_change` is negative: measure it as the largest absolute difference of the two Grams")
    if g_change > 1e-4 * scale:
        raise Wrong(f"the Gram changed by {g_change:.3g}: a sum over positions cannot depend on their order. "
                    "Compare gram_matrix(shuffled) with gram_matrix(features), both (1, C, C)")
    d = s - f
    want = 0.5 * float((d ** 2).sum())
    if _close(c_change, 2 * want):
        raise Wrong("twice the expected content distance: the formula has a factor 1/2")
    if _close(c_change, want / d.size * 2):
        raise Wrong("that is the mean of the squared differences: the content loss here is the half *sum*")
    if _close(c_change, 0.5 * float(np.abs(d).sum())):
        raise Wrong("you summed absolute differences: the content loss squares them")
    if not _close(c_change, want):
        raise Wrong(f"the content distance should be 1/2 * sum over channels and positions of "
                    f"(shuffled - F)^2; yours is {c_change:.4g}")


def style_loss_numpy(photo_feats: dict, painting_feats: dict) -> float:
    """Gatys et al.'s L_style with equal weights: E_l with un-normalized Grams, the painting's rescaled to M."""
    total = 0.0
    for layer, fp in photo_feats.items():
        Fp, Sa = _np(fp[0]).reshape(fp.shape[1], -1), _np(painting_feats[layer][0]).reshape(fp.shape[1], -1)
        C, M = Fp.shape
        G, A = _gram_un(Fp), _gram_un(Sa) * (M / Sa.shape[1])
        total += ((G - A) ** 2).sum() / (4 * C**2 * M**2) / len(photo_feats)
    return float(total)


@exercise("11.3", "the style loss of the photo against each painting, and the closest painting")
def check_3(losses, closest, *, photo_feats, painting_feats):
    names = list(painting_feats)
    if not isinstance(losses, dict) or set(losses) != set(names):
        raise Wrong(f"`losses` should be a dict with one number per painting, keys {names}")
    ref = {n: style_loss_numpy(photo_feats, painting_feats[n]) for n in names}
    for n in names:
        v = number(losses[n], f"losses[{n!r}]")
        if v < 0:
            raise Wrong(f"losses[{n!r}] is negative: obj.style is a score (minus the loss); the loss is its negative")
        if not _close(v, ref[n], 1e-3):
            raise Wrong(f"losses[{n!r}] = {v:.4g}, but the paper's formula gives {ref[n]:.4g}: use "
                        "style_loss(photo, batch_grams([name]))")
    name = _painting_name(closest, names, "`closest`")
    best, worst = min(ref, key=ref.get), max(ref, key=ref.get)
    if name == worst and name != best:
        raise Wrong(f"{name!r} has the *largest* style loss, the farthest painting: the closest has the smallest")
    if name != best:
        raise Wrong(f"{name!r} is not the painting with the smallest style loss")


@exercise("11.4", "the pixel-level Gram of each painting and the one with the largest blue-blue entry")
def check_4(pixel_grams, bluest, *, paintings):
    names = list(paintings)
    if not isinstance(pixel_grams, dict) or set(pixel_grams) != set(names):
        raise Wrong(f"`pixel_grams` should be a dict with one Gram per painting, keys {names}")
    for n in names:
        g = pixel_grams[n]
        if not isinstance(g, torch.Tensor) or tuple(g.shape) != (3, 3):
            shape = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
            raise Wrong(f"pixel_grams[{n!r}] is {shape}; expected (3, 3): colour channel x colour channel "
                        "(drop the batch axis of gram_matrix's (1, 3, 3))")
        x = _np(paintings[n][0]).reshape(3, -1)                           # (3, M): R, G, B over pixels
        want = _gram_un(x) / x.shape[1]
        if np.allclose(_np(g), want * x.shape[1], rtol=1e-4):
            raise Wrong("your Gram is the sum over pixels: the course's Gram is the mean (divide by M = H*W)")
        if not np.allclose(_np(g), want, rtol=1e-4, atol=1e-6):
            raise Wrong(f"pixel_grams[{n!r}] is not the mean over pixels of x_a * x_b for the colour channels a, b")
    name = _painting_name(bluest, names, "`bluest`")
    blue = {n: float((_np(paintings[n][0, 2]) ** 2).mean()) for n in names}
    red = {n: float((_np(paintings[n][0, 0]) ** 2).mean()) for n in names}
    if name != max(blue, key=blue.get):
        if name == max(red, key=red.get):
            raise Wrong("that is the largest red-red entry: channels are in RGB order, so blue is index 2")
        raise Wrong("not the largest G[2, 2] (blue-blue, the mean of B^2 over the pixels)")


@exercise("11.1", "predict: as beta/alpha grows, does the final content loss rise or fall?")
def check_1(prediction, *, ratios, content_end, trained: bool = True):
    """``trained=False``: the losses come from untrained weights, which cannot test the prediction (said in one line)."""
    if prediction not in ("rises", "falls"):
        raise Wrong(f"answer 'rises' or 'falls', got {prediction!r}")
    if not trained:
        print("the measurement ran on untrained weights, whose tiny losses leave the trade-off to the TV penalty: "
              "it cannot test your prediction (run the lesson on trained weights to see it)")
        return
    c = [float(v) for v in content_end]
    order = np.argsort(ratios)
    fact = "rises" if c[order[-1]] > c[order[0]] else "falls"
    if prediction != fact:
        raise Wrong(f"measured: the content loss {fact} (from {c[order[0]]:.3g} at beta/alpha = "
                    f"{ratios[order[0]]:g} to {c[order[-1]]:.3g} at {ratios[order[-1]]:g}). A larger beta makes "
                    "the style term's gradient dominate, and the optimizer buys style with content")
