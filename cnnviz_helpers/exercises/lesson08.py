"""Exercise checks of lesson 08 (class and neuron visualization): notebooks/08_class_visualization.md.

The references are independent of the student's code path: the exact receptive-field
tracer of lesson 01, a separate forward pass through ``capture`` (never the optimization
loop), torch's softmax for a numpy softmax, a numpy loop over images and pixels for
Yosinski et al.'s contribution clipping (never ``regularizers``), and numpy's FFT for the
spectrum distance of MaCo's section (never ``spectrum_distance``).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from . import Wrong, exercise
from .lesson07 import close, diagnose, tensor

__all__ = ["RF_OPTIONS", "check_1", "check_2", "check_3", "check_4", "check_5", "check_6", "check_7"]

RF_OPTIONS = (10, 30, 70, 150)


@exercise("08.1", "predict the width in pixels of an early_mid unit's receptive field (block3 on Lite0)")
def check_1(prediction, *, measured_width: int, options: Sequence[int] = RF_OPTIONS, layer: str = "block3",
            stride: int = 8):
    """``layer``: the layer's name as the page shows it; ``stride``: its units' spacing in pixels (``rf.stride``)."""
    if isinstance(prediction, bool) or not isinstance(prediction, (int, float)) or prediction not in options:
        raise Wrong(f"answer with one of {', '.join(map(str, options))} (pixels), got {prediction!r}")
    fact = min(options, key=lambda o: abs(math.log(o / measured_width)))
    if prediction != fact:
        side = "small" if prediction < fact else "large"
        steps = round(math.log2(stride)) if stride >= 1 and 2 ** round(math.log2(stride)) == stride else None
        why = f" ({steps} stride-2 steps)" if steps else ""
        raise Wrong(f"too {side}: measured {measured_width} pixels, closest to {fact}. {layer}'s units are "
                    f"{stride} pixels apart{why}, and every k×k convolution after a stride-s "
                    f"step widens the field by (k - 1)·s pixels, so the field grows fast with depth")


def _int4(answer) -> tuple[int, int, int, int]:
    if not isinstance(answer, (tuple, list)) or len(answer) != 4:
        raise Wrong(f"give a tuple of four pixel indices (top, left, bottom, right), got {answer!r:.80}")
    out = []
    for v in answer:
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, int):
            raise Wrong(f"the box holds whole pixel indices (int), got {type(v).__name__} {v!r}: use int(...)")
        out.append(v)
    return tuple(out)  # type: ignore[return-value]


@exercise("08.2", "the bounding box (top, left, bottom, right) of the gradient's support")
def check_2(answer, *, rf_box: Sequence[int], size: int, layer: str = "block3"):
    t, l, b, r = _int4(answer)
    T, Lf, B, R = rf_box
    if b < t or r < l:
        raise Wrong(f"bottom < top or right < left in {answer}: the order is (top, left, bottom, right), "
                    f"rows first, each the smallest then the largest index")
    if (t, l, b, r) == (0, 0, size - 1, size - 1) and rf_box != (0, 0, size - 1, size - 1):
        raise Wrong("that is the whole image: did you differentiate the whole channel (all positions) "
                    f"instead of the single unit at the centre of {layer}'s map?")
    if b == B + 1 or r == R + 1:
        raise Wrong("off by one: bottom and right are the last row and column *included* (nz.max()), "
                    "not one past them")
    if t < T or l < Lf or b > B or r > R:
        raise Wrong(f"your box {answer} reaches outside the unit's receptive field {tuple(rf_box)}: a unit "
                    f"cannot depend on pixels it never sees. Is (i, j) the centre of {layer}'s map?")
    hf, wf = (b - t + 1) / (B - T + 1), (r - l + 1) / (R - Lf + 1)
    if min(hf, wf) < 0.6:
        raise Wrong(f"your box covers only {hf:.0%} × {wf:.0%} of the receptive field {tuple(rf_box)}: the "
                    f"gradient is non-zero on most of it. Did you give feature-map coordinates, or threshold "
                    f"|gradient| instead of testing != 0?")


def _penalty_mistakes(v, unit, other_units, pen, lam):
    diagnose(v, {
        "the penalty has the wrong sign: penalties are subtracted, objective - 1000 * obj.tv()": unit + lam * pen,
        "your objective has no TV penalty: subtract 1000 * obj.tv()": unit,
        **{hint: u - lam * pen for hint, u in other_units.items()},
    }, rel=1e-4)


@exercise("08.3", "make an off-centre unit of mid (block4 on Lite0) fire: objective and optimized image")
def check_3(objective, image, *, model, size: int, layer: str = "block4", k: int = 5, i: int = 2, j: int = 5,
            lam: float = 1000.0, min_rise: float = 1.0):
    """The unit ``layer``[k] at (i, j) minus ``lam``·TV, and an image that raises it by ``min_rise`` over grey.

    ``min_rise`` is a trained network's behaviour (the page passes 0 on an untrained model,
    where a unit's scale is arbitrary and it may be off: then it must only not go down).
    """
    from .. import objectives as obj
    from ..hooks import capture
    from ..objectives import Context, Objective

    if not isinstance(objective, Objective):
        raise Wrong(f"objective_3 must be an objective built from cnnviz_helpers.objectives "
                    f"(e.g. obj.neuron(...) - ...), got {type(objective).__name__}")
    from ..layers import resolve_layer

    def same_layer(name) -> bool:            # 'block4' and 'mid' are one layer on Lite0
        try:
            return resolve_layer(model, name)[0] == resolve_layer(model, layer)[0]
        except KeyError:
            return False

    if len(objective.layers) != 1 or not same_layer(objective.layers[0]):
        raise Wrong(f"your objective reads the layers {objective.layers}; the unit is in {layer!r} only")
    g = torch.Generator().manual_seed(0)                          # three smooth test images and a flat one
    coarse = torch.rand(3, 3, max(2, size // 12), max(2, size // 12), generator=g)
    imgs = torch.cat([torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear"),
                      torch.full((1, 3, size, size), 0.3)]).to(next(model.parameters()).device)
    with capture(model, [layer]) as rec, torch.no_grad():
        logits = model(imgs)
        a = rec[layer]                                            # (N, C, h, w): measured by a forward pass
    ctx = Context(image=imgs, input=imgs, logits=logits, activations={objective.layers[0]: a})
    try:
        with torch.no_grad():
            v = objective(ctx).double().cpu()
    except Exception as e:  # noqa: BLE001 - any failure of the student's objective becomes a hint
        raise Wrong(f"evaluating your objective failed: {type(e).__name__}: {e}") from None
    a = a.double().cpu()
    unit, pen = a[:, k, i, j], obj.tv()(ctx).double().cpu()
    if not close(v, unit - lam * pen, 1e-4):
        _penalty_mistakes(v, unit, {
            f"row and column are swapped: the unit is at row i = {i}, column j = {j}: obj.neuron(layer, k, i, j)":
                a[:, k, j, i],
            "that is the unit at the centre of the map: pass its row and column, obj.neuron(layer, k, i, j)":
                a[:, k, a.shape[2] // 2, a.shape[3] // 2],
            "that is the mean of the whole channel (obj.channel): the task is one unit, obj.neuron": a[:, k].mean((1, 2)),
        }, pen, lam)
        raise Wrong(f"your objective is not {layer}[{k}] at ({i}, {j}) minus {lam:g} · TV on test images: "
                    f"obj.neuron({layer!r}, {k}, {i}, {j}) - {lam:g} * obj.tv()")
    if hasattr(image, "image") and not isinstance(image, torch.Tensor):
        raise Wrong("image_3 is the optimization's result object: take its .image")
    im = tensor(image, "image_3")
    if tuple(im.shape) != (1, 3, size, size):
        raise Wrong(f"image_3 must be one image (1, 3, {size}, {size}) (batch, colour, rows, columns), "
                    f"got shape {tuple(im.shape)}")
    if float(im.min()) < 0 or float(im.max()) > 1:
        raise Wrong("image_3 has values outside [0, 1]: take optimize(...).image, which is clamped")
    with capture(model, [layer]) as rec, torch.no_grad():
        model(torch.cat([torch.full_like(im, 0.5), im]).float().to(imgs.device))
        before, after = (float(u) for u in rec[layer][:, k, i, j])
    if after < before or (min_rise > 0 and after <= before):
        raise Wrong(f"the unit went *down*, {before:.3f} -> {after:.3f}: optimize maximizes its objective; "
                    f"is the unit's term positive?")
    if after < before + min_rise:
        raise Wrong(f"the unit rose only from {before:.3f} to {after:.3f} (at least +{min_rise:g} expected): start "
                    f"from params.pixels and run NSTEPS steps with lr=0.02")


@exercise("08.4", "each class image's probability of its own class, by a numpy softmax of the logits")
def check_4(answer, *, logits, ids: Sequence[int], reference):
    S = np.asarray(logits, dtype=np.float64)                      # (n, classes)
    n, ids = S.shape[0], np.asarray(ids)
    ref = torch.as_tensor(reference).double().cpu()
    p = tensor(answer, "answer_4")
    if tuple(p.shape) == S.shape:
        raise Wrong(f"shape {S.shape} is every class's probability: pick each image's own target, "
                    f"P[np.arange({n}), ids], shape ({n},)")
    if tuple(p.shape) == (n, n):
        raise Wrong(f"shape ({n}, {n}): P[:, ids] gives every image's probability for every target; each "
                    f"image has one target: P[np.arange({n}), ids], shape ({n},)")
    if tuple(p.shape) != (n,):
        raise Wrong(f"expected shape ({n},), one probability per image, got {tuple(p.shape)}")
    if close(p, ref, 1e-4):
        return
    rows = np.arange(n)
    e1 = np.exp(S - S.max(axis=1, keepdims=True))
    e0 = np.exp(S - S.max(axis=0, keepdims=True))
    diagnose(p, {
        "those are the logits S_c themselves: apply the softmax e^S_c / Σ_k e^S_k": S[rows, ids],
        "not normalized: divide e^(S_c - max) by the sum of e^(S_k - max) over all the classes": e1[rows, ids],
        "you normalized over the images (axis 0): the softmax sums over the classes of one image (axis 1)":
            (e0 / e0.sum(axis=0, keepdims=True))[rows, ids],
    }, rel=1e-4)
    if float(p.min()) < 0:
        raise Wrong("negative values: these look like log-probabilities; a probability is in [0, 1]")
    raise Wrong(f"differs from the model's softmax by up to {float((p - ref).abs().max()):.3g}: "
                f"p_c = e^(S_c - max) / Σ_k e^(S_k - max), per image")


def _clipped(x: np.ndarray, score: np.ndarray, p: float, center: float, *, per_image: bool = True,
             lowest: bool = True, value: float | None = None) -> np.ndarray:
    """``x`` (N,3,H,W) with the pixels whose ``score`` (N,H,W) is in the lowest ``p`` % set to ``center``.

    The variants (over the whole batch, the highest scores, another value) are the mistakes' answers.
    """
    out = x.copy()
    fill = center if value is None else value
    for n in range(x.shape[0]):
        pool = score[n] if per_image else score
        q = np.quantile(pool, p / 100 if lowest else 1 - p / 100)
        mask = score[n] <= q if lowest else score[n] >= q
        out[n][:, mask] = fill
    return out


@exercise("08.5", "Yosinski et al.'s contribution clipping by hand: the lowest p % of pixels set to grey")
def check_5(answer, *, x, g, p: float, center: float = 0.5):
    """``x``: the image ``(N,3,H,W)``, ``g``: its ascent gradient, ``p``: the percentage clipped per image.

    The reference: per image, a pixel's contribution ``|Σ_c (x - center)_c g_c|``; the pixels at or
    below the ``p``-th percentile (numpy's linear ``quantile``) become ``center`` in every channel.
    """
    xs, gs = (tensor(v, n).numpy() for v, n in ((x, "x"), (g, "g")))
    a = tensor(answer, "answer_5")
    if tuple(a.shape) != xs.shape:
        raise Wrong(f"answer_5 must be the whole clipped image, shape {xs.shape} (images, colours, rows, "
                    f"columns), got {tuple(a.shape)}: a mask or a score per pixel is only a step")
    d = xs - center
    contribution = np.abs((d * gs).sum(1))                                   # (N, H, W)
    ref = _clipped(xs, contribution, p, center)
    if close(a, ref, 1e-5):
        return
    diagnose(a, {
        "you set the pixels to 0 (black): Yosinski et al. set them to the centre, the grey 0.5 that the "
        "model reads as zero": _clipped(xs, contribution, p, center, value=0.0),
        "those are the pixels with the *largest* contribution: clip the lowest p %": _clipped(
            xs, contribution, p, center, lowest=False),
        "without the absolute value, large negative contributions count as small: take |Σ_c (x - 0.5)_c g_c|":
            _clipped(xs, (d * gs).sum(1), p, center),
        "that is the norm clip, |x - 0.5| per pixel; the contribution multiplies by the gradient first":
            _clipped(xs, np.sqrt((d ** 2).sum(1)), p, center),
        "you forgot the centre: the contribution is (x - 0.5) · g, the change if the pixel went to grey":
            _clipped(xs, np.abs((xs * gs).sum(1)), p, center),
        "you summed |(x - 0.5)_c g_c| channel by channel: the contribution is the absolute value of the sum "
        "over the three colours": _clipped(xs, np.abs(d * gs).sum(1), p, center),
        "the percentile is per image: take np.quantile of each image's contributions, not of the whole batch":
            _clipped(xs, contribution, p, center, per_image=False),
    }, rel=1e-5)
    changed = np.abs(a.numpy() - xs).sum(1) > 0                              # (N, H, W): pixels you changed
    raise Wrong(f"differs from the reference by up to {float(np.abs(a.numpy() - ref).max()):.3g}; you changed "
                f"{changed.mean():.0%} of the pixels, the step changes the lowest {p:g} % of each image's "
                f"contributions |Σ_c (x - 0.5)_c g_c| to 0.5 (all three colours)")


@exercise("08.6", "the depth figure's choice: the channel whose mean activation the photo raises most over grey")
def check_6(answer, *, model, photo, layer: str):
    """``photo``: ``(1,3,H,W)`` in [0,1]; the reference is a separate forward pass through ``capture``
    of the grey image and the photo, channel means over the positions, and the largest rise."""
    from ..hooks import capture

    if isinstance(answer, torch.Tensor) and answer.numel() == 1:
        answer = answer.item()
    if isinstance(answer, np.generic):
        answer = answer.item()
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise Wrong(f"answer_6 is one channel index (an int), got {type(answer).__name__} {answer!r:.60}: "
                    f"use int(...argmax())")
    x = torch.cat([torch.full_like(photo, 0.5), photo]).float()
    with capture(model, [layer]) as rec, torch.no_grad():
        model(x)
    a = rec[layer].double().cpu()                                 # (2, C, h, w): grey, photo
    if not 0 <= answer < a.shape[1]:
        raise Wrong(f"{layer} has channels 0..{a.shape[1] - 1}, got {answer}")
    means, peaks = a.flatten(2).mean(2), a.flatten(2).amax(2)      # (2, C)
    rise = means[1] - means[0]
    best = int(rise.argmax())
    if answer == best:
        return
    mistakes = {
        int(means[1].argmax()): "that channel has the largest mean on the photo, but it may be as large on grey: "
                                "subtract the grey image's mean, photo minus grey",
        int(rise.argmin()): "that channel *falls* most: the largest rise is the argmax of photo minus grey",
        int((peaks[1] - peaks[0]).argmax()): "that is the largest rise of the channel's *maximum* over positions; the "
                                             "depth figure maximizes the channel's mean, so compare means",
        int(rise.abs().argmax()): "the largest change in absolute value can be a fall: take the signed rise",
    }
    mistakes.pop(best, None)
    if answer in mistakes:
        raise Wrong(mistakes[answer])
    raise Wrong(f"channel {answer} rises by {float(rise[answer]):.3g}, channel {best} by {float(rise[best]):.3g}: "
                f"the mean over the positions of each channel, on the photo minus on grey, and its argmax")


def _log_spectra(image: np.ndarray, natural: np.ndarray, *, remove_mean: bool = True, dc: bool = False):
    """numpy: ``log A, log natural, A, natural`` over the bins kept, ``(3, bins)`` each; ``A = |rfft2(image - mean)|``."""
    x = image - image.mean(axis=(1, 2), keepdims=True) if remove_mean else image
    a = np.abs(np.fft.rfft2(x, norm="ortho"))                                # (3, H, W//2+1)
    keep = np.ones(natural.shape[1:], dtype=bool)
    keep[0, 0] = dc
    with np.errstate(divide="ignore"):
        return np.log(a[:, keep]), np.log(natural[:, keep]), a[:, keep], natural[:, keep]


@exercise("08.7", "the spectrum distance of one MaCo image to the natural spectrum, by hand in numpy")
def check_7(answer, *, image, natural):
    """``image``: ``(3,H,W)`` in [0,1]; ``natural``: the magnitude ``(3,H,W//2+1)``. The reference: numpy's rfft2
    (orthonormal) of each channel minus its mean, logs over every bin but DC, each centred on its mean over
    the channels and bins, the mean absolute difference."""
    x, m = (np.asarray(tensor(v, n).numpy(), dtype=np.float64) for v, n in ((image, "image"), (natural, "natural")))
    if isinstance(answer, (list, tuple)) or (hasattr(answer, "shape") and getattr(answer, "ndim", 0) > 0):
        shape = tuple(np.shape(answer))
        raise Wrong(f"answer_7 is one number, got shape {shape}: the mean runs over the channels and the bins "
                    f"together (a value per channel or per bin is a step on the way)")
    if isinstance(answer, torch.Tensor) or isinstance(answer, np.generic):
        answer = float(answer)
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise Wrong(f"answer_7 is one number (a float), got {type(answer).__name__} {answer!r:.60}")
    if not math.isfinite(answer):
        raise Wrong(f"answer_7 is {answer}: a log of 0. After the mean is removed the DC bin (0, 0) is 0: leave "
                    f"it out of the logs (keep[0, 0] = False)")
    la, lm, a, mm = _log_spectra(x, m)
    ref = float(np.mean(np.abs((la - la.mean()) - (lm - lm.mean()))))
    if close(answer, ref, 1e-6):
        return
    per_channel = (la - la.mean(1, keepdims=True)) - (lm - lm.mean(1, keepdims=True))
    mistakes = {
        "you compared the raw logs: subtract each spectrum's mean log first (one mean over its channels and "
        "bins), so that one scale per image (the contrast) does not count": np.mean(np.abs(la - lm)),
        "you centred each channel on its own mean: the distance removes one scale per image, one mean over "
        "all three channels and bins": np.mean(np.abs(per_channel)),
        "that is the mean of the squared differences: take the mean absolute difference":
            np.mean(((la - la.mean()) - (lm - lm.mean())) ** 2),
        "np.log10: the distance uses the natural logarithm, np.log": ref / math.log(10),
        "compare the logarithms of the magnitudes (log A - mean log A), not the magnitudes themselves":
            np.mean(np.abs((a - a.mean()) - (mm - mm.mean()))),
    }
    for remove_mean in (True, False):              # the DC bin kept: finite only if neither DC term is 0
        lad, lmd, _, _ = _log_spectra(x, m, remove_mean=remove_mean, dc=True)
        if np.isfinite(lad).all() and np.isfinite(lmd).all():
            mistakes[f"you kept the DC bin (0, 0){'' if remove_mean else ' without removing the mean'}: it is the image's "
                     f"mean, not part of the spectrum's shape; leave it out of the logs (keep[0, 0] = False)"] = \
                np.mean(np.abs((lad - lad.mean()) - (lmd - lmd.mean())))
    if abs(answer) < 1e-9:
        raise Wrong("0: without the absolute value the centred differences average to exactly 0; take "
                    "np.mean(np.abs(...))")
    diagnose(answer, mistakes, rel=1e-6)
    raise Wrong(f"got {answer:.6g}, expected {ref:.6g}: per channel |np.fft.rfft2(x - x.mean(), norm='ortho')|, "
                f"np.log over every bin but (0, 0), minus the mean of all those logs; the same for the natural "
                f"spectrum; np.mean(np.abs(difference))")
