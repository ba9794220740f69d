"""Checks of lesson 10 (DeepDream, Mordvintsev, Olah & Tyka; lecture module 13.8).

Each check recomputes the fact another way (the course loop's own step, one forward
pass capturing every layer in float64, a closed form) and names the usual mistake
when the answer matches one.
"""
from __future__ import annotations

from typing import Sequence

import torch

from . import Wrong, exercise

__all__ = ["check_1", "check_2", "check_3", "check_4", "check_5"]


def _tensor_like(answer, like: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(answer, torch.Tensor):
        raise Wrong(f"{what} should be a tensor like the photo, got {type(answer).__name__}")
    if tuple(answer.shape) != tuple(like.shape):
        raise Wrong(f"{what} should have the photo's shape {tuple(like.shape)} (batch, RGB, height, width), "
                    f"got {tuple(answer.shape)}")
    return answer.detach().to(like.device, torch.float64)


@exercise("10.2", "one normalized DeepDream step at early_mid (block3 on Lite0), by hand")
def check_2(answer, *, photo: torch.Tensor, loop_image: torch.Tensor, lr: float, layer: str = "block3") -> None:
    x = _tensor_like(answer, photo, "the stepped image")
    p, ref = photo.to(torch.float64), loop_image.to(torch.float64)
    if x.min() < 0 or x.max() > 1:
        raise Wrong(f"pixels in [{float(x.min()):.3f}, {float(x.max()):.3f}]: clamp the stepped image to [0, 1]")
    if torch.allclose(x, ref, atol=1e-5):
        return
    free = (ref > 0) & (ref < 1) & (x > 0) & (x < 1)              # pixels that no clamp touched
    mine, theirs = (x - p)[free], (ref - p)[free]
    if float(mine.abs().max()) == 0:
        raise Wrong("the image did not change: add lr * g / mean|g| to the photo")
    scale = float((mine * theirs).sum() / (theirs * theirs).sum())    # least-squares factor between the steps
    if abs(scale + 1) < 0.05:
        raise Wrong("the step goes the wrong way: DeepDream *ascends*, x + lr * g / mean|g| (the loop "
                    "maximizes the objective)")
    if torch.allclose(mine, scale * theirs, rtol=1e-3, atol=1e-6) and scale < 0:
        raise Wrong(f"the opposite direction, {-scale:.3g} times the step: did you divide by the mean of g "
                    "(negative here) instead of the mean of |g|?")
    if torch.allclose(mine, scale * theirs, rtol=1e-3, atol=1e-6):
        raise Wrong(f"the right direction but {scale:.3g} times the step: divide g by mean|g| over all of the "
                    "image's values (the mean of the absolute value; not the sum, not the max, not mean g)")
    raise Wrong(f"the step's direction differs from the loop's: is g the gradient of the mean of h² at "
                f"{layer!r} with respect to the photo (no jitter)?")


@exercise("10.3", "the octave heights, smallest first")
def check_3(answer, *, height: int, octaves: int, scale: float) -> None:
    if not isinstance(answer, (list, tuple)):
        raise Wrong(f"write a list of integers, smallest first, e.g. [93, 131, ...]; got {type(answer).__name__}")
    if not all(isinstance(h, int) and not isinstance(h, bool) for h in answer):
        raise Wrong("every height should be an integer number of pixels: round(...) them")
    ref = [round(height * scale ** -k) for k in range(octaves - 1, -1, -1)]
    answer = list(answer)
    if answer == ref:
        return
    if answer == ref[::-1]:
        raise Wrong("smallest first: the dream starts at the smallest octave and ends at the full size")
    if len(answer) != octaves:
        raise Wrong(f"{octaves} octaves, {octaves} heights (got {len(answer)}): the full size {height} is the last "
                    f"octave, and the smallest is {height} / {scale}^{octaves - 1}")
    if answer == [int(height * scale ** -k) for k in range(octaves - 1, -1, -1)]:
        raise Wrong("int() cuts off the fraction: round to the nearest pixel with round()")
    chained, h = [height], height
    for _ in range(octaves - 1):
        h = round(h / scale)
        chained.insert(0, h)
    if answer == chained:
        raise Wrong(f"you rounded at every step (round(round({height}/{scale})/{scale})...): divide the full "
                    f"height by {scale}^k, then round once")
    raise Wrong(f"octave k (0 = full size) has height round({height} / {scale}^k)")


@exercise("10.1", "predict what the dream does to the dreamed layer's negative activations")
def check_1(prediction, *, neg_before: float, neg_after: float) -> None:
    choices = ("grow", "shrink")
    if not isinstance(prediction, str) or prediction.strip().lower() not in choices:
        raise Wrong(f'answer with the string "grow" or "shrink", got {prediction!r}')
    fact = "grow" if neg_after > neg_before else "shrink"
    if prediction.strip().lower() != fact:
        raise Wrong(f"measured: the negative part's norm went from {neg_before:.1f} to {neg_after:.1f} ({fact}). "
                    "‖h‖² counts a -3 exactly like a +3: its gradient at the layer is h itself, so every "
                    "negative value is pushed further down. Only a ReLU before the layer (document 004's "
                    "advice) would leave nothing negative to push")


@exercise("10.4", "the norm growth at every layer for the dream at the most-grown layer")
def check_4(answer, *, model, photo: torch.Tensor, dreamed: torch.Tensor, layers: Sequence[str],
            own_growth: dict) -> None:
    from .. import capture

    if not isinstance(answer, dict):
        raise Wrong(f"write a dict {{layer: ratio}}, e.g. {{'block2': 1.3, ...}}; got {type(answer).__name__}")
    if set(answer) != set(layers):
        raise Wrong(f"one entry per layer of {list(layers)}; missing {sorted(set(layers) - set(answer))}, "
                    f"extra {sorted(set(answer) - set(layers))}")
    try:
        mine = {k: float(v) for k, v in answer.items()}
    except (TypeError, ValueError):
        raise Wrong("every ratio should be one number") from None
    norms = {}
    for name, x in (("photo", photo), ("dream", dreamed)):
        with torch.no_grad(), capture(model, list(layers)) as rec:       # one pass records every layer
            model(x)
            norms[name] = {k: float(torch.linalg.vector_norm(rec[k].to(torch.float64))) for k in layers}
    ref = {k: norms["dream"][k] / norms["photo"][k] for k in layers}

    def same(d):
        return all(abs(mine[k] - d[k]) <= 1e-3 * abs(d[k]) for k in layers)

    if same(ref):
        return
    if same({k: 1 / v for k, v in ref.items()}):
        raise Wrong("upside down: divide the dream's norm by the photo's (a growth > 1 means the dream raised it)")
    if same({k: v**2 for k, v in ref.items()}):
        raise Wrong("those are ratios of squared norms: compare ||h||, not ||h||²")
    if same({k: float(own_growth[k]) for k in layers}):
        raise Wrong("those are the `growth` values, each layer measured on *its own* dream: measure every layer "
                    "on the one dream at the most-grown layer")
    raise Wrong("not ||h_L(dream)|| / ||h_L(photo)|| for each layer L, with the dream at the most-grown layer")


@exercise("10.5", "the slide's single-neuron gradient dL/dh for L = h_ij², by hand")
def check_5(answer, *, h: torch.Tensor, k: int, i: int, j: int) -> None:
    if not isinstance(answer, torch.Tensor):
        raise Wrong(f"dL/dh should be a tensor shaped like h_photo {tuple(h.shape)}, got {type(answer).__name__}")
    if tuple(answer.shape) != tuple(h.shape):
        raise Wrong(f"dL/dh has one entry per activation: the shape of h_photo, {tuple(h.shape)} "
                    f"(batch, channel, row, column); got {tuple(answer.shape)}")
    a, h = answer.detach().to(h.device, torch.float64), h.detach().to(torch.float64)
    ref = torch.zeros_like(h)
    ref[0, k, i, j] = 2 * h[0, k, i, j]
    close = lambda t: torch.allclose(a, t, rtol=1e-5, atol=1e-7)
    if close(ref):
        return
    if close(2 * h) or close(h):
        raise Wrong("that is the gradient of the whole layer's objective (every entry non-zero): L = h_ij² "
                    "depends on one activation only, so every other entry of dL/dh is 0")
    if close(ref / 2):
        raise Wrong("the derivative of h_ij² is 2·h_ij, not h_ij: you left out the factor 2")
    if close(-ref):
        raise Wrong("the sign is flipped: d(h_ij²)/dh_ij = +2·h_ij")
    if i != j and j < h.shape[-2] and i < h.shape[-1]:              # the position transposed
        swapped = torch.zeros_like(h)
        swapped[0, k, j, i] = 2 * h[0, k, j, i]
        if close(swapped):
            raise Wrong(f"you put it at row {j}, column {i}: the row index I comes first, h[0, k, I, J]")
    off = a.clone()
    off[0, k, i, j] = 0
    if float(off.abs().max()) > 0:
        raise Wrong(f"{int((off != 0).sum())} entries other than channel {k}, row {i}, column {j} are non-zero: "
                    "L = h_ij² does not depend on them, their derivative is 0")
    raise Wrong(f"the entry at channel {k}, row {i}, column {j} should be 2·h_ij = {float(ref[0, k, i, j]):.4g}, "
                f"got {float(a[0, k, i, j]):.4g}")
