"""Checks for the exercises of lesson 02 (filters, ``notebooks/02_filters.md``)."""
from __future__ import annotations

import numbers

import numpy as np
import torch

from . import Wrong, exercise

__all__ = ["check_2", "check_3", "check_4", "check_5", "check_1", "CANDIDATES"]


def _array(answer, name: str, shape: tuple[int, ...], axes: str) -> np.ndarray:
    """``answer`` as a float array of ``shape``, or a hint naming the expected shape and its axes."""
    if not isinstance(answer, (torch.Tensor, np.ndarray)):
        raise Wrong(f"{name} should be a tensor of shape {shape} ({axes}), got {type(answer).__name__}")
    a = np.asarray(answer.detach().cpu() if isinstance(answer, torch.Tensor) else answer, dtype=np.float64)
    if a.shape != shape:
        raise Wrong(f"{name} has shape {a.shape}; expected {shape} ({axes})")
    return a


def _responses(W: np.ndarray, patch: np.ndarray) -> np.ndarray:
    """(K,) responses w_k . patch of every filter, written out as a sum over colour, row and column."""
    return np.einsum("kcij,cij->k", W, patch)


CANDIDATES = ("w", "w+", "|w|")


@exercise("02.1", "predict the best non-negative unit-norm input of a depthwise kernel")
def check_1(prediction, *, measured: str) -> None:
    """``measured``: the candidate (one of CANDIDATES) closest to what projected gradient ascent reached."""
    if not isinstance(prediction, str) or prediction not in CANDIDATES:
        raise Wrong(f"answer one of {', '.join(repr(c) for c in CANDIDATES)}, got {prediction!r}")
    if prediction == measured:
        return
    if prediction == "w":
        raise Wrong(f"the ascent reached {measured!r}: w has negative entries, and a non-negative input "
                    "cannot point along them; the best it can do there is 0")
    if prediction == "|w|":
        raise Wrong(f"the ascent reached {measured!r}: |w| puts input where the weight is negative, and "
                    "every bit of it there *lowers* w . x; set those entries to 0 instead")
    raise Wrong(f"the ascent reached {measured!r}, not {prediction!r}")


@exercise("02.2", "the stem filter with the largest response to a vertical dark-to-bright edge")
def check_2(answer, *, W) -> None:
    """``W``: (K, 3, k, k) stem weights; ``answer``: (filter index, response)."""
    if not (isinstance(answer, tuple) and len(answer) == 2):
        raise Wrong("answer_2 should be a pair (filter index, response), e.g. (3, 1.5)")
    k, value = answer
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise Wrong(f"the filter index should be an int (use int(...)), got {type(k).__name__}")
    W = np.asarray(W, dtype=np.float64)
    if not 0 <= k < len(W):
        raise Wrong(f"there are {len(W)} filters: the index must be in 0..{len(W) - 1}, got {k}")
    edge = np.zeros(W.shape[1:])
    edge[..., 0], edge[..., -1] = -1.0, 1.0                       # (colour, row, column): columns differ
    r, norms = _responses(W, edge), np.linalg.norm(W.reshape(len(W), -1), axis=1)
    best = int(r.argmax())
    if k != best:
        if k == int((-r).argmax()):
            raise Wrong("that filter likes bright on the left and dark on the right: your edge is reversed "
                        "(-1 in the left column, +1 in the right)")
        if k == int(_responses(W, edge.swapaxes(1, 2)).argmax()):
            raise Wrong("that is the best filter for a *horizontal* edge: your -1/+1 are in the top and bottom "
                        "rows; the columns are the last axis of (colour, row, column)")
        if k == int((r / np.maximum(norms, 1e-30)).argmax()):
            raise Wrong("you ranked the filters by cosine (response divided by ||w||): the question asks for "
                        "the raw response w . x, where strong filters count for more")
        raise Wrong(f"filter {k} is not the one with the largest response w . edge")
    if isinstance(value, bool) or not (isinstance(value, numbers.Real) or getattr(value, "ndim", None) == 0):
        raise Wrong(f"the response should be one number (use float(...)), got {type(value).__name__}")
    value = float(value)
    if abs(value - r[best] / norms[best]) < 1e-4:
        raise Wrong("the index is right, but you divided the response by ||w||: give the raw w . edge")
    if abs(value + r[best]) < 1e-4:
        raise Wrong("the index is right, but the response has the wrong sign")
    if abs(value - r[best]) > 1e-4 * max(1.0, abs(r[best])):
        raise Wrong(f"the index is right, but {value:.4f} is not that filter's response w . edge")


@exercise("02.3", "the unit-norm patch with the smallest response of filter 0")
def check_3(answer, *, w) -> None:
    """``w``: (3, k, k) weights of the filter; ``answer``: the unit-norm patch minimizing w . x."""
    w = np.asarray(w, dtype=np.float64)
    x = _array(answer, "answer_3", w.shape, "colour, row, column, like W[0]")
    nx, nw = np.linalg.norm(x), np.linalg.norm(w)
    cos = float((x * w).sum() / max(nx * nw, 1e-30))
    if cos > 0.999:
        raise Wrong("your patch points along w: that is the patch with the *largest* response; "
                    "the smallest response points the other way")
    if abs(nx - 1) > 1e-4:
        if cos < -0.999:
            raise Wrong(f"the direction is right but ||x|| = {nx:.4g}: divide by the norm, ||x|| must be 1")
        raise Wrong(f"||x|| = {nx:.4g}: the question asks for a unit-norm patch")
    rnd = np.random.default_rng(5).standard_normal((20000, w.size))           # a search, no formula
    rnd /= np.linalg.norm(rnd, axis=1, keepdims=True)
    lowest = float((rnd @ w.ravel()).min())
    if float((x * w).sum()) > lowest:
        raise Wrong(f"your patch's response is {float((x * w).sum()):.4f}, but a random unit patch reaches "
                    f"{lowest:.4f}: by Cauchy-Schwarz, w . x >= -||w|| ||x||, with equality for one direction")
    if cos > -0.9999:
        raise Wrong(f"close (cosine with w {cos:.4f}), but the minimum is attained exactly for one direction")


@exercise("02.4", "the red-green opponent fraction of every stem filter")
def check_4(answer, *, W, live) -> None:
    """``W``: (K, 3, k, k) stem weights; ``live``: (K,) bool, the filters that are not dead."""
    W = np.asarray(W, dtype=np.float64)
    live = np.asarray(live, dtype=bool)
    if isinstance(answer, (torch.Tensor, np.ndarray)) and tuple(answer.shape) == W.shape[:1] + W.shape[2:]:
        raise Wrong(f"answer_4 has shape {tuple(answer.shape)} (filters, rows, columns): sum the squared "
                    "projection over the pixels too, one fraction per filter")
    f = _array(answer, "answer_4", (len(W),), "one fraction per filter")[live]
    energy = (W ** 2).sum((1, 2, 3))[live]
    true = ((W[:, 0] - W[:, 1]) ** 2 / 2).sum((1, 2))[live] / energy     # (w_r - w_g)^2 / 2 per pixel
    if np.allclose(f, true, atol=1e-4):
        return
    if np.allclose(f, 2 * true, atol=1e-4):
        raise Wrong("twice the right values: u = (1, -1, 0) must be normalized to (1, -1, 0)/sqrt(2), "
                    "or P = u u^T is not a projection")
    if np.allclose(f, np.sqrt(true), atol=1e-4):
        raise Wrong("a ratio of norms: the fraction of energy is ||P w||^2 / ||w||^2, squared norms")
    if np.allclose(f, 1 - true, atol=1e-4):
        raise Wrong("that is the fraction of everything *but* the red-green part")
    if (f < -1e-6).any() or (f > 1 + 1e-6).any():
        raise Wrong("some values lie outside [0, 1]: a projection keeps at most all of the energy")
    raise Wrong("not ||P w||^2 / ||w||^2 with P = u u^T applied to the 3 colour weights of every pixel")


@exercise("02.5", "the effective filter of a first-convolution unit, without a backward pass")
def check_5(answer, *, grad, w, std) -> None:
    """``grad``: (3, k, k) the unit's input gradient from the backward pass (pixel space);
    ``w``: (3, k, k) its weights; ``std``: the 3 stds of the model's input normalization."""
    g = np.asarray(grad.detach().cpu() if isinstance(grad, torch.Tensor) else grad, dtype=np.float64)
    w = np.asarray(w.detach().cpu() if isinstance(w, torch.Tensor) else w, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64).reshape(3, 1, 1)
    e = _array(answer, "answer_5", g.shape, "colour, row, column, like W[0]")
    tol = 1e-4 * max(float(np.abs(g).max()), 1e-30)

    def near(candidate) -> bool:
        return candidate.shape == e.shape and float(np.abs(e - candidate).max()) <= tol

    if near(g):
        return
    if near(-g):
        raise Wrong("the sign is flipped: the unit grows along its weights, so its gradient points along w / std")
    if near(w) and not near(w / std):
        raise Wrong("that is the weight itself: the unit sees z = (x - mean) / std, so by the chain rule "
                    "each colour's weights are divided by that colour's std")
    if near(w * std):
        raise Wrong("you multiplied by std: dz/dx = 1 / std, so the weights are divided by it")
    if w.shape[-1] == 3 and near(w / std.reshape(1, 1, 3)):
        raise Wrong("you divided along the columns: std has one value per colour channel, the first axis of "
                    "W[0] (colour, row, column); reshape it to (3, 1, 1)")
    if near(w / std):
        raise Wrong("w / std is the formula, but it does not match the backward pass here: is W the first "
                    "convolution's weights and std the model's?")
    raise Wrong("not the gradient of w . z + b with respect to x, with z = (x - mean) / std per colour channel")
