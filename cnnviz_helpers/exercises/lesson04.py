"""Checks of lesson 04's exercises (occlusion, notebooks/04_occlusion.md).

Each check recomputes the fact another way: the images seen by a forward hook, a fresh
forward pass of the occluded photo, a whole-network occlusion run.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from ..hooks import module_hooks
from . import Wrong, exercise

__all__ = ["check_1", "check_2", "check_3", "check_4"]


def _integer(answer, what: str) -> int:
    whole_tensor = isinstance(answer, torch.Tensor) and answer.numel() == 1 and not answer.is_floating_point()
    if isinstance(answer, bool) or not (isinstance(answer, (int, np.integer)) or whole_tensor):
        raise Wrong(f"{what} should be an integer (an `int`), got {type(answer).__name__} {answer!r}")
    return int(answer)


def _occluded(x, y, col, window, colour):
    """A copy of ``x`` (1,3,H,W) with a ``window`` square of ``colour`` at row ``y``, column ``col``."""
    out = x.clone()
    out[:, :, y:y + window, col:col + window] = colour
    return out


@exercise("04.1", "the number of images `occlusion(method='full')` sends through the model")
def check_1(answer, *, model, image, window, stride):
    n = _integer(answer, "the number of images")
    calls = []
    from ..attribution import occlusion

    with module_hooks([(model, lambda mod, inp, out: calls.append(inp[0].shape[0]))]):
        occlusion(model, image, window=window, stride=stride, batch_size=4, method="full", progress=False)
    seen = sum(calls)
    if n == seen:
        return
    h, w = image.shape[-2:]
    floor_grid = ((h - window) // stride + 1) * ((w - window) // stride + 1)
    if n == seen - 1:
        raise Wrong("one short: the clean image goes through the model too (the drop is p(x) minus p(x~))")
    if n in (floor_grid, floor_grid + 1) and floor_grid + 1 != seen:
        raise Wrong("you rounded (H-k)/s down: the last patch is cut at the border, so an axis takes "
                    "ceil((H-k)/s) + 1 positions")
    if n in (math.ceil(h / stride) * math.ceil(w / stride), math.ceil(h / stride) * math.ceil(w / stride) + 1):
        raise Wrong("H/s counts the positions of a patch that may start anywhere, even past H-k: use ceil((H-k)/s) + 1")
    raise Wrong(f"{n} images, but the model saw {seen} (rows x columns of patch positions, plus one clean image)")


@exercise("04.2", "the class that gains the most where the patch hurts the top class most")
def check_2(answer, *, model, x, occ, c, window, grey):
    k = _integer(answer, "a class index")
    n_classes = occ.base.shape[0]
    if not 0 <= k < n_classes:
        raise Wrong(f"{k} is not a class index: they run from 0 to {n_classes - 1}")
    drop = occ.drop_map(c)
    bi, bj = np.unravel_index(int(drop.argmax()), tuple(drop.shape))
    with torch.no_grad():                                   # a fresh forward pass, not the stored probabilities
        clean = model(x).softmax(-1)[0]
        hidden = model(_occluded(x, occ.ys[bi], occ.xs[bj], window, grey)).softmax(-1)[0]
    gain = hidden - clean
    if k == int(gain.argmax()):
        return
    if k == c:
        raise Wrong("that is the top class itself, the one that loses the most there: look for the largest gain "
                    "p(x~) - p(x) among the other classes")
    if k == int(hidden.argmax()):
        raise Wrong("that is the most probable class with the patch in, not the one whose probability rises the "
                    "most: subtract the clean probabilities (occ.base)")
    if k == int((-gain).argmax()):
        raise Wrong("that class loses the most: the gain is p(x~) - p(x), occluded minus clean")
    raise Wrong("not that class: take the position where drop_map(c) is largest, then the argmax of "
                "occ.probs[i, j] - occ.base")


_OCCLUDERS = {"black": "black", "grey": "grey", "gray": "grey", "mean": "grey", "mean colour": "grey"}


@exercise("04.3", "predict which occluder, black or the mean grey, hurts the top class more")
def check_3(prediction, *, drop_grey, drop_black):
    if not isinstance(prediction, str) or prediction.strip().lower() not in _OCCLUDERS:
        raise Wrong(f'answer with the string "black" or "grey", got {prediction!r}')
    guess = _OCCLUDERS[prediction.strip().lower()]
    fact = "black" if drop_black > drop_grey else "grey"
    if guess != fact:
        raise Wrong(f"measured: the largest drop is {drop_grey:.3f} with grey and {drop_black:.3f} with black. "
                    + ("Black is far from every photo's colours: after normalization it is a strong input of "
                       "its own, not 'no signal', so it disturbs the network more than it hides."
                       if fact == "black" else
                       "Here the mean colour hides the evidence better than black disturbs it; the map "
                       "depends on the occluder either way."))


@exercise("04.4", "the largest drop of the top class with black patches")
def check_4(answer, *, model, x, c, window, stride, drop_grey):
    if isinstance(answer, torch.Tensor) and answer.numel() > 1:
        raise Wrong(f"one number was asked for, got a tensor of shape {tuple(answer.shape)}: take the max "
                    f"of the (rows, columns) drop map")
    try:
        a = float(answer)
    except (TypeError, ValueError):
        raise Wrong(f"the largest drop should be a number, got {type(answer).__name__}") from None
    from ..attribution import OcclusionResult, occlusion
    from ..runs import cached

    def reference():                                       # every image through the whole network
        r = occlusion(model, x, window=window, stride=stride, baseline=0.0, method="full", batch_size=16,
                      progress=False)
        return {"probs": r.probs, "base": r.base, "ys": r.ys, "xs": r.xs, "window": r.window,
                "stride": r.stride, "image_size": r.image_size, "method": r.method}
    photo = hashlib.sha1(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()   # the image, by content
    ref = OcclusionResult(**cached("04.4 check: black occlusion, whole network", reference, model=model,
                                   image=photo, shape=tuple(x.shape), window=window, stride=stride))
    drop = ref.drop_map(c)                                 # every image through the whole network
    want = float(drop.max())
    if abs(a - want) < 1e-4:
        return
    if not -1 <= a <= 1:
        raise Wrong(f"{a:.3f} is no difference of two probabilities: those lie in [-1, 1]")
    if abs(a - drop_grey) < 1e-4:
        raise Wrong("that is the grey patch's largest drop: pass baseline=0.0 for black patches")
    if abs(a - float(ref.probs[..., c].min())) < 1e-4:
        raise Wrong("that is the lowest probability with a patch in, not the drop: the drop is p(x) - p(x~)")
    if abs(a + want) < 1e-4 or abs(a - float((-drop).max())) < 1e-4:
        raise Wrong("wrong sign: the drop is clean minus occluded, p(x) - p(x~), and its max is the worst patch")
    raise Wrong(f"{a:.4f}, but the whole-network run with black patches gives a largest drop of {want:.4f} "
                f"for class {c}")
