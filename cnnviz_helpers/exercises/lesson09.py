"""Checks of lesson 09 (inverting a representation, Mahendran & Vedaldi; lecture module 13.7; feature
accentuation, Hamblin et al. 2024).

Each check recomputes the fact its own way (float64, a different formula or the
other start) and names the usual mistake when the answer matches one.
"""
from __future__ import annotations

import difflib
import math
from typing import Sequence

import numpy as np
import torch

from . import Wrong, exercise
from ._answers import number

__all__ = ["check_1", "check_2", "check_3", "check_4", "check_5", "check_6"]


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(b))


def _name_the_mistake(value: float, mistakes: list[tuple[float, str]]) -> None:
    """Raise the hint of the first known mistake whose value ``value`` matches."""
    for v, hint in mistakes:
        if _close(value, v, 1e-4):
            raise Wrong(hint)


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().to(torch.float64)


def _same_layer(model, name: str, layers: Sequence[str]) -> str | None:
    """The inverted layer that ``name`` (an alias or a portable stage name) resolves to, if any."""
    from .._names import resolve_layer

    try:
        dotted = resolve_layer(model, name)[0]
    except KeyError:
        return None
    return next((l for l in layers if resolve_layer(model, l)[0] == dotted), None)


@exercise("09.1", "predict which layer's code gives the reconstruction most like the photo")
def check_1(prediction, *, layers: Sequence[str], mean_ssim, model=None) -> None:
    """``model`` (optional): lets a prediction be a portable stage name ("first_conv") of an inverted layer."""
    if not isinstance(prediction, str):
        raise Wrong(f"write the layer's name as a string, e.g. {list(layers)[-1]!r}; got {type(prediction).__name__}")
    if prediction not in layers:
        same = _same_layer(model, prediction, layers) if model is not None else None
        if same is None:
            near = difflib.get_close_matches(prediction, list(layers), n=3)
            raise Wrong(f"{prediction!r} is not one of the inverted layers {list(layers)}"
                        + (f" (did you mean {near[0]!r}?)" if near else ""))
        prediction = same
    s = np.asarray(mean_ssim, dtype=float)
    best = list(layers)[int(s.argmax())]
    if prediction != best:
        mine = s[list(layers).index(prediction)]
        raise Wrong(f"the measured winner is {best!r} (mean SSIM {s.max():.2f}), {prediction!r} reached {mine:.2f}. "
                    "Each stage can only discard information about the pixels (strided convolutions, ReLU "
                    "clipping, pooling), never add it, so the shallowest code, which still has more numbers "
                    "than the image has pixels, is the easiest to invert; depth buys invariance, not detail")


@exercise("09.2", "the PSNR of the blank start against the photo, in dB")
def check_2(answer, *, reconstruction: torch.Tensor, original: torch.Tensor, other_start: torch.Tensor) -> None:
    value = number(answer, "the PSNR")
    if not math.isfinite(value):
        raise Wrong(f"the PSNR is {value}: is the MSE zero or negative? compare the reconstruction with x0")
    mse = float(torch.mean((_f64(reconstruction) - _f64(original)) ** 2))
    ref = -10 * math.log10(mse)                        # 10 log10(1 / MSE), peak value 1
    if _close(value, ref, 1e-4):
        return
    other = -10 * math.log10(float(torch.mean((_f64(other_start) - _f64(original)) ** 2)))
    hints = [
        (ref + 20 * math.log10(255), "you used 255 as the peak value: our pixels are in [0, 1], so the peak is 1"),
        (2 * ref, "that is 20·log10(1/MSE): PSNR is 10·log10(1/MSE) (or 20·log10(1/RMSE))"),
        (ref / 2, "that is 10·log10(1/RMSE): with the root of the MSE the factor is 20, with the MSE it is 10"),
        (-ref, "wrong sign: PSNR is 10·log10(1 / MSE); a worse reconstruction gives a *smaller* PSNR"),
        (ref * math.log(10), "that is the natural logarithm: PSNR uses log10"),
        (mse, "that is the MSE itself: PSNR is 10·log10(1 / MSE)"),
        (other, "that is image 1, the one from *noise*: the exercise asks for image 0, the blank one"),
    ]
    _name_the_mistake(value, hints)
    raise Wrong(f"{value:.3f} dB is not the PSNR of the blank image against x0[0] "
                "(mean squared difference over all 3 x H x W values, then 10·log10(1/MSE))")


@exercise("09.3", "the relative feature error at block3 of each pool reconstruction")
def check_3(answer, *, model, images: torch.Tensor, layer: str, target: torch.Tensor, starts: torch.Tensor,
            pool_target: torch.Tensor, pool_layer: str = "pool") -> None:
    """``pool_layer``: the penultimate layer that ``images`` were inverted from (``pool_target`` is its code)."""
    from ..objectives import features

    if not isinstance(answer, (torch.Tensor, np.ndarray)):
        raise Wrong(f"expected a tensor (or array) with one error per reconstruction, got {type(answer).__name__}")
    n = images.shape[0]
    a = torch.as_tensor(np.asarray(answer.detach().cpu() if isinstance(answer, torch.Tensor) else answer),
                        dtype=torch.float64).flatten()
    if a.numel() != n:
        raise Wrong(f"expected shape ({n},): one relative error per reconstruction (axis 0: from blank, from "
                    f"noise), got {tuple(np.shape(answer))}; sum over all of an image's code values, "
                    "not over the batch")

    def errors(x, name, t):                            # expanded: (|f|² - 2 f·f0 + |f0|²) / |f0|²
        f = _f64(features(model, x, [name])[name]).flatten(1)
        f0 = _f64(t).flatten(1)
        n0 = (f0 * f0).sum()
        return ((f * f).sum(1) - 2 * (f @ f0.T).squeeze(1) + n0) / n0, n0

    ref, n0 = errors(images, layer, target)
    if torch.allclose(a, ref, rtol=1e-3, atol=1e-6):
        return
    if (a < 0).any():
        raise Wrong("an error is negative: a squared distance divided by a squared norm is >= 0")
    if torch.allclose(a, errors(images, pool_layer, pool_target)[0], rtol=1e-3):
        raise Wrong(f"those are the errors at {pool_layer!r} (the figure's numbers): measure the codes at {layer!r}, "
                    f"against the photo's {layer!r} code")
    if torch.allclose(a, ref * n0, rtol=1e-3):
        raise Wrong("not normalized: divide the squared distance by ||φ0||², the squared norm of the photo's code")
    if torch.allclose(a, ref.sqrt(), rtol=1e-3):
        raise Wrong("that is ||φ(x) - φ0|| / ||φ0||, without the squares: the lesson's error is squared")
    if torch.allclose(a, errors(starts, layer, target)[0], rtol=1e-3):
        raise Wrong("those are the errors of the *starting* images: measure inversions['pool'], the results")
    if torch.allclose(a, ref.flip(0), rtol=1e-3):
        raise Wrong("the two errors are swapped: keep the batch order (from blank, from noise)")
    raise Wrong(f"not the relative feature error ||φ(x) - φ0||² / ||φ0||² of each image, with φ = the {layer!r} "
                "features of a fresh forward pass and φ0 = the photo's")


@exercise("09.4", "the RMS pixel difference between the two pool reconstructions")
def check_4(answer, *, images: torch.Tensor, original: torch.Tensor) -> None:
    value = number(answer, "the RMS difference")
    d = _f64(images[0]) - _f64(images[1])
    ref = float(torch.linalg.vector_norm(d) / math.sqrt(d.numel()))
    if _close(value, ref, 1e-4):
        return
    if value < 0:
        raise Wrong("an RMS difference is >= 0: the root of the mean of squares")
    to_photo = [float(torch.sqrt(torch.mean((_f64(im) - _f64(original).reshape(im.shape)) ** 2))) for im in images]
    hints = [
        (ref**2, "that is the mean squared difference: take its square root (RMS = root of the mean square)"),
        (ref**2 * d.numel(), "that is the sum of squares: average over the 3 x H x W values, then take the root"),
        (ref * math.sqrt(d.numel()), "that is the Euclidean norm: divide the sum of squares by the number of values "
                                     "before the root"),
        (float(d.abs().mean()), "that is the mean absolute difference: square, average, then take the root"),
    ] + [(v, "that is a reconstruction against the photo: the exercise compares the two reconstructions "
             "with each other") for v in to_photo]
    _name_the_mistake(value, hints)
    raise Wrong(f"{value:.4f} is not the RMS of inversions['pool'][0] - inversions['pool'][1]")


@exercise("09.5", "the top-5 overlap of the penultimate-code reconstruction with the original, by hand")
def check_5(answer, *, original: torch.Tensor, reconstruction: torch.Tensor) -> None:
    if isinstance(answer, bool) or not isinstance(answer, (int, np.integer)):
        if isinstance(answer, float) and 0 < answer < 1:
            raise Wrong(f"{answer} looks like a fraction: count the shared classes, an integer from 0 to 5")
        raise Wrong(f"write one integer from 0 to 5 (the number of shared classes), got {type(answer).__name__} {answer!r}")
    a = _f64(original).reshape(-1)
    b = _f64(reconstruction).reshape(-1)
    ta, tb = a.topk(5).indices.tolist(), b.topk(5).indices.tolist()
    ref = len(set(ta) & set(tb))
    if int(answer) == ref:
        return
    same_rank = sum(x == y for x, y in zip(ta, tb))
    if int(answer) == same_rank:
        raise Wrong(f"{answer} is the number of ranks where both have the same class; count the classes the two "
                    "top-5 sets share, whatever their order (a set intersection)")
    low = len(set(a.topk(5, largest=False).indices.tolist()) & set(b.topk(5, largest=False).indices.tolist()))
    if int(answer) == low and low != ref:
        raise Wrong("those are the 5 *smallest* logits: topk takes the largest by default (largest=True)")
    if int(answer) == int(ta[0] == tb[0]) and ref > 1:
        raise Wrong("that compares only the top-1 classes: compare the sets of the 5 top classes")
    if not 0 <= int(answer) <= 5:
        raise Wrong(f"two sets of 5 classes share between 0 and 5 of them, got {answer}")
    raise Wrong("not the size of the intersection of the two top-5 sets of class indices "
                "(logits_rec[EMB][0].topk(5).indices and logits_person[0].topk(5).indices)")


@exercise("09.6", "the relative feature distance of one accentuated image to the photo, by hand")
def check_6(answer, *, model, images: torch.Tensor, index: int, layer: str, target: torch.Tensor,
            photo: torch.Tensor) -> None:
    """``images``: the accentuated batch (one per λ), ``index``: the one asked for; ``target``: the photo's code
    at ``layer``; ``photo``: the photo (for the pixel-space mistake)."""
    from ..objectives import features

    value = number(answer, "the relative distance")
    f = _f64(features(model, images, [layer])[layer]).flatten(1)
    f0 = _f64(target).flatten(1)
    n0 = float((f0 * f0).sum())
    sq = (f * f).sum(1) - 2 * (f @ f0.T).squeeze(1) + n0           # expanded ||f - f0||², one per image
    ref = float(sq[index]) / n0
    if abs(value - ref) <= 2e-3 * abs(ref) + 1e-7:             # relative: the distances are small numbers
        return
    if value < 0:
        raise Wrong("a squared distance divided by a squared norm is >= 0")
    x, x0 = _f64(images[index]).flatten(), _f64(photo).flatten()
    hints = [
        (ref * n0, "not normalized: divide the squared distance by ||φ0||², the squared norm of the photo's code"),
        (math.sqrt(ref), "that is ||φ(x) - φ0|| / ||φ0||, without the squares: the lesson's distance is squared"),
        (float(sq[index]) / float((f[index] * f[index]).sum()),
         "you divided by the accentuated image's own ||φ(x)||²: normalize by the photo's code, ||φ0||²"),
        (ref * n0 / f0.numel(), "that is the mean squared difference over the code's values: divide the sum of "
                                "squares by ||φ0||² (the sum of the photo's squared values), not by their count"),
        (float(((x - x0) ** 2).sum() / (x0 ** 2).sum()),
         "that is the distance in pixels: measure the codes at the regularization layer, with features(...)"),
    ] + [(float(sq[k]) / n0, f"that is the image of batch entry {k}: the exercise asks for entry {index}")
         for k in range(len(sq)) if k != index]
    _name_the_mistake(value, hints)
    raise Wrong(f"{value:.5f} is not ||φ(x) - φ0||² / ||φ0||² for image {index} at {layer!r} "
                "(φ: a fresh forward pass with features, φ0: the photo's code phi_seed)")
