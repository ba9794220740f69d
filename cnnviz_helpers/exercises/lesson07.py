"""Exercise checks of lesson 07 (CAM and Grad-CAM): notebooks/07_cam_gradcam.md.

Each check compares the answer with an independent computation (the library's
``gradcam``, a sum taken the other way round, a fresh forward pass, scipy's
trapezoid rule) and recognizes the usual mistakes by recomputing them. The small
helpers ``tensor``, ``close`` and ``diagnose`` are shared with lesson 08.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from . import Wrong, exercise
from ._answers import number

__all__ = ["check_1", "check_2", "check_3", "check_4", "check_5", "check_6", "tensor", "close", "diagnose"]


def tensor(answer: Any, what: str) -> torch.Tensor:
    """``answer`` as a float tensor on the CPU (numpy arrays accepted), or ``Wrong``."""
    if isinstance(answer, np.ndarray):
        answer = torch.from_numpy(answer)
    if not isinstance(answer, torch.Tensor):
        raise Wrong(f"{what} must be a tensor, got {type(answer).__name__}")
    return answer.detach().cpu().double()


def close(a, b, rel: float = 1e-4) -> bool:
    """Equal up to ``rel`` of the larger magnitude (tensors or numbers)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape:
        return False
    scale = max(float(a.abs().max()), float(b.abs().max()), 1e-12)
    return float((a - b).abs().max()) <= rel * scale


def diagnose(answer, mistakes: Mapping[str, Any], rel: float = 1e-4) -> None:
    """Raise ``Wrong(hint)`` for the first ``hint: value`` of ``mistakes`` that the answer equals."""
    for hint, value in mistakes.items():
        if close(answer, value, rel):
            raise Wrong(hint)


@exercise("07.1", "Grad-CAM of one layer by hand (the stage late: block6 on Lite0), as one (h, w) map")
def check_1(answer, *, model, x, target: int, layer: str = "late"):
    from ..attribution import gradcam
    from ..hooks import capture

    ref = gradcam(model, x, target, layer)[0].detach().cpu().double()        # (h, w): the library's map
    with capture(model, [layer], gradients=True) as rec:                        # for the diagnoses only
        xg = x.clone().requires_grad_(True)
        torch.autograd.grad(model(xg)[0, target], xg)
        A, dA = rec[layer][0].detach().cpu().double(), rec.gradients[layer][0].cpu().double()
    K, h, w = A.shape
    a = tensor(answer, "answer_1")
    if a.shape != ref.shape:
        if tuple(a.shape) == (K, h, w):
            raise Wrong(f"shape (K, h, w) = {tuple(a.shape)}: you kept the channel axis; Grad-CAM sums "
                        f"α_k A_k over the K = {K} channels (axis 0) and returns one ({h}, {w}) map")
        if tuple(a.shape) == (K,):
            raise Wrong(f"shape ({K},): these are the weights α_k, one per channel; now weight the maps "
                        f"A_k with them, sum over k and apply the ReLU")
        if a.numel() == h * w:
            raise Wrong(f"shape {tuple(a.shape)}: drop the batch axis, the map is (h, w) = ({h}, {w})")
        raise Wrong(f"expected a ({h}, {w}) map (rows, columns of {layer}'s grid), got shape {tuple(a.shape)}")
    if float(a.min()) < -1e-6 * max(float(a.abs().max()), 1e-12):
        raise Wrong("the map has negative values: Grad-CAM ends with a ReLU, clamp(min=0)")
    if close(a, ref, 1e-4):
        return
    alpha = dA.mean((1, 2))
    diagnose(a, {
        f"your map is {h * w} = h·w times too large: α_k is the *mean* of the gradient over the "
        f"positions, not its sum": ref * h * w,
        "you weighted each position by its own gradient (Σ_k dA·A): α_k is one number per channel, "
        "the spatial mean of its gradient": (dA * A).sum(0).clamp(min=0),
        "you averaged the gradient over the channels (axis 0); α_k averages over the positions "
        "(axes 1 and 2) of each channel": (dA.mean(0, keepdim=True) * A).sum(0).clamp(min=0),
        "the sign is flipped: α_k is the gradient of the class score (ascent), not of its negative":
            (-(alpha[:, None, None] * A).sum(0)).clamp(min=0),
        "you normalized the map to a maximum of 1: keep Grad-CAM's own scale": ref / max(float(ref.max()), 1e-12),
    })
    raise Wrong(f"your map differs from gradcam(model, x, c, {layer!r}) by up to "
                    f"{float((a - ref).abs().max()):.3g} (its maximum is {float(ref.max()):.3g}): "
                    f"α_k = mean over (i, j) of ∂S_c/∂A_k(i, j), then ReLU(Σ_k α_k A_k)")


@exercise("07.2", "predict which map stays most like the trained one when the classifier is randomized")
def check_2(prediction, *, measured: Mapping[str, float]):
    def plain(name: str) -> str:
        return name.split(" (")[0].strip().lower()

    by_name = {plain(k): k for k in measured}
    if not isinstance(prediction, str) or plain(prediction) not in by_name:
        raise Wrong(f"answer with one of the names {', '.join(repr(plain(k)) for k in measured)}, "
                    f"got {prediction!r}")
    fact = max(measured, key=lambda k: measured[k])
    mine = by_name[plain(prediction)]
    if mine != fact:
        reasons = {
            "cam": "CAM *is* the classifier's weights applied to the feature maps: new weights, new map",
            "grad-cam": "Grad-CAM's weights α_k are gradients that flow through the classifier first",
            "guided grad-cam": "Guided Grad-CAM multiplies by Grad-CAM, so it inherits Grad-CAM's change",
        }
        raise Wrong(f"measured: {fact} kept a rank correlation of {measured[fact]:.2f}, {mine} only "
                    f"{measured[mine]:.2f}. {reasons.get(plain(mine), '')}; guided backprop hardly "
                    f"depends on the top layers (lesson 06), so it did not notice")


def _right_share(g: torch.Tensor, start: int) -> float:
    return float(g[:, start:].sum() / g.sum())


@exercise("07.3", "the fraction of the golden retriever's Grad-CAM on the right half of the collage")
def check_3(answer, *, dog_map, cat_map, dog_left_share: float):
    g, gc = tensor(dog_map, "dog_map"), tensor(cat_map, "cat_map")
    half = g.shape[1] // 2
    v = number(answer, "answer_3")
    expected = 1.0 - dog_left_share                       # the lesson measured the left half: left + right = 1
    if 1.0 < v <= 100.0 and abs(v / 100 - expected) < 1e-3:
        raise Wrong(f"{v:.1f} is a percentage: give the fraction, a number between 0 and 1")
    if not 0.0 <= v <= 1.0:
        raise Wrong(f"{v:.3g} is not a fraction between 0 and 1: divide the right half's sum by the whole map's sum")
    if abs(v - expected) <= 1e-3:
        return
    diagnose(v, {
        "that is the left half (the cat's side): the right half of the map is columns "
        f"{half}..{g.shape[1] - 1}, g[:, {half}:]": dog_left_share,
        "that is the *cat's* map: take the Grad-CAM of the golden retriever": _right_share(gc, half),
        f"off by one column: the right half of the {g.shape[1]} columns starts at column {half}, g[:, {half}:]":
            _right_share(g, half + 1),
        f"off by one column: the right half starts at column {half}, not {half - 1}": _right_share(g, half - 1),
    }, rel=1e-3)
    raise Wrong(f"{v:.4f}, but the dog's map has {expected:.4f} of its sum on the right half: "
                    f"sum the columns {half}.. and divide by the sum of the whole map")


@exercise("07.4", "the fraction of the golden retriever's probability lost when the right half is grey")
def check_4(answer, *, model, collage, target: int):
    v = number(answer, "answer_4")
    W = collage.shape[-1]
    right = torch.arange(W, device=collage.device) >= W // 2            # (W,) True on the dog's half
    grey = torch.as_tensor(model.mean, dtype=collage.dtype, device=collage.device).reshape(1, 3, 1, 1)
    variants = torch.cat([collage,
                          torch.where(right, grey, collage),            # the task: right half grey
                          torch.where(~right, grey, collage),           # the left half grey instead
                          torch.where(right, torch.zeros_like(grey), collage)])   # black instead of grey
    with torch.no_grad():
        p = model(variants).softmax(-1)[:, target].double()
    p_full, p_right, p_left, p_black = (float(q) for q in p)
    expected = 1 - p_right / p_full
    if abs(v - expected) <= 1e-3 * max(1.0, abs(expected)):
        return
    diagnose(v, {
        "that is the probability that is *left* with the right half hidden; the fraction lost is "
        "1 - p_hidden / p_full": p_right,
        "that is the fraction *kept* (p_hidden / p_full); the fraction lost is 1 minus it": p_right / p_full,
        "that is the absolute drop p_full - p_hidden; give it relative to p_full": p_full - p_right,
        "you greyed out the left half (the cat): hide the dog's half, columns W/2 .. W-1": 1 - p_left / p_full,
        "you filled the half with black (0); use the model's mean colour (model.mean, 0.5 on Lite0), as occlusion does":
            1 - p_black / p_full,
    }, rel=1e-3)
    raise Wrong(f"{v:.4f}, but greying out the right half takes p from {p_full:.4f} to {p_right:.4f}, "
                    f"a loss of {expected:.4f} of it")


@exercise("07.5", "the deletion AUC of guided backprop on the first photo, by the trapezoid rule")
def check_5(answer, *, curve):
    from scipy.integrate import trapezoid

    v = number(answer, "answer_5")
    f, d = curve.fractions.double().numpy(), curve.deletion.double().numpy()
    expected = float(trapezoid(d, f))
    if abs(v - expected) <= 1e-6:
        return
    diagnose(v, {
        "that is the left-rectangle rule Σ Δf · d[i]; the trapezoid rule averages both ends, "
        "Σ Δf · (d[i] + d[i+1]) / 2": float(np.sum(np.diff(f) * d[:-1])),
        "that is the right-rectangle rule Σ Δf · d[i+1]; average both ends of each interval":
            float(np.sum(np.diff(f) * d[1:])),
        "that is the plain mean of the curve: the trapezoid rule gives the two end points half weight":
            float(np.mean(d)),
        "that is the insertion curve's area; the task asks for deletion": float(trapezoid(curve.insertion.double().numpy(), f)),
        "x and y are swapped: integrate the probability (y) over the fraction of pixels (x)": float(trapezoid(f, d)),
        "you normalized by the first probability: the AUC is of the probability itself": expected / d[0],
    }, rel=1e-6)
    if not 0.0 <= v <= 1.0:
        raise Wrong(f"{v:.4g}: an area under a probability curve over fractions 0..1 lies between 0 and 1")
    raise Wrong(f"{v:.6f}, but the trapezoid rule gives {expected:.6f}: Σ (f[i+1] - f[i]) (d[i] + d[i+1]) / 2")


@exercise("07.6", "the Gini index of a map by hand (sorted |a|, the formula of the report card)")
def check_6(answer, *, attribution):
    v = number(answer, "answer_6")
    a = attribution.detach().cpu().double().flatten()
    n = a.numel()
    k = np.arange(1, n + 1)
    asc, desc = np.sort(np.abs(a.numpy())), np.sort(np.abs(a.numpy()))[::-1]
    # computed in the other, equivalent form G = Σ_k (2k - n - 1) c_k / (n Σ c) (expand the lesson's formula)
    expected = float(np.sum((2 * k - n - 1) * asc) / (n * asc.sum()))
    if abs(v - expected) <= 1e-6:
        return
    signed = np.sort(a.numpy())
    diagnose(v, {
        "you sorted in descending order: the formula sorts |a| ascending (the largest entries get the smallest weights)":
            float(1 - 2 * np.sum((desc / desc.sum()) * (n - k + 0.5) / n)),
        "you forgot the 1/2: the weights are (n - k + 1/2) / n": float(1 - 2 * np.sum((asc / asc.sum()) * (n - k) / n)),
        "that is 1 - G, the complement: G = 1 - 2 Σ ...": 1 - expected,
        "you dropped the factor 2 in front of the sum": float(1 - np.sum((asc / asc.sum()) * (n - k + 0.5) / n)),
    }, rel=1e-6)
    if np.any(a.numpy() < 0) and abs(signed.sum()) > 1e-12:
        diagnose(v, {"take |a| first: the Gini index is of the absolute values":
                     float(1 - 2 * np.sum((signed / signed.sum()) * (n - k + 0.5) / n))}, rel=1e-6)
    if not 0.0 <= v < 1.0:
        raise Wrong(f"{v:.4g}: the Gini index of a non-negative map lies in [0, 1)")
    raise Wrong(f"{v:.6f}, but the formula gives {expected:.6f}: sort |a| ascending, then "
                "1 - 2 Σ_k (c_k / Σ c) (n - k + 1/2) / n")
