"""Yosinski et al.'s regularizers as steps of the optimization loop (lesson 08; "Understanding Neural
Networks Through Deep Visualization", ICML DL workshop 2015, the article of document 001).

Their update is ``x <- r(x + η ∇)``: after each gradient step the image goes through operators ``r``
that are neither penalties in the objective nor random transforms. Each works in the model's
centred pixel space, ``x - center`` (``center`` = the mean colour, 0.5 for the embedded models,
whose normalized zero it is; pass ``center=model.mean`` for the torchvision models):

- ``decay(θ)``: ``x <- center + (1 - θ)(x - center)``: the L2 pull, applied as a shrink step;
- ``blur_every(σ, k)``: a Gaussian blur of width σ every k steps (not a penalty: the image itself);
- ``clip_norm(p)``: pixels whose colour norm ``|x_ij - center|`` is in the lowest ``p`` % are set to
  ``center`` (small, faint pixels carry little);
- ``clip_contribution(p)``: pixels whose contribution ``|Σ_c (x - center)_c ∇_c|`` (the first-order
  change of the score if the pixel went to ``center``) is in the lowest ``p`` % are set to ``center``;
- ``clip_gradient(m)``: the gradient is rescaled to norm at most ``m`` per image before the step.

``optimize(..., regularize=[decay(0.01), blur_every(1.0, 4)])``; pixel parameterizations only.
"""
from __future__ import annotations

import torch

from ._checks import check_int, check_number
from ._util import gaussian_blur

__all__ = ["Regularizer", "decay", "blur_every", "clip_norm", "clip_contribution", "clip_gradient"]


class Regularizer:
    """A step of the loop: ``on_gradient(g, t)`` before the optimizer's update, ``on_image(x, g, t)`` after it
    (``x``: the pixels ``(N,3,H,W)``, ``g``: the ascent gradient of this step, ``t``: 0-based step)."""

    name = "regularizer"

    def on_gradient(self, g: torch.Tensor, t: int) -> torch.Tensor:
        return g

    def on_image(self, x: torch.Tensor, g: torch.Tensor, t: int) -> torch.Tensor:
        return x

    def __repr__(self) -> str:
        return self.name


def _center(center) -> torch.Tensor:
    """``center`` (a number, or one per colour channel) as a ``(1,C,1,1)`` tensor."""
    c = torch.as_tensor(center, dtype=torch.float32).flatten()
    if c.numel() not in (1, 3) or not torch.isfinite(c).all():
        raise ValueError(f"center must be a number or three numbers (one per colour channel), got {center!r}")
    return c.view(1, -1, 1, 1)


def _percentile(p, what: str) -> float:
    return check_number(p, what, lo=0, hi=100, must="a percentage in [0, 100]")


class _Decay(Regularizer):
    def __init__(self, theta: float, center: float) -> None:
        self.theta, self.center = check_number(theta, "theta", lo=0, hi=1), _center(center)
        self.name = f"decay({self.theta:g})"

    def on_image(self, x, g, t):
        c = self.center.to(x)
        return c + (1 - self.theta) * (x - c)


class _BlurEvery(Regularizer):
    def __init__(self, sigma: float, every: int) -> None:
        self.sigma = check_number(sigma, "sigma", above=0)
        self.every = check_int(every, "every", lo=1)
        self.name = f"blur_every({self.sigma:g}, {self.every})"

    def on_image(self, x, g, t):
        return gaussian_blur(x, self.sigma, padding="replicate") if t % self.every == 0 else x


def _below(score: torch.Tensor, p: float) -> torch.Tensor:
    """Mask ``(N,1,H,W)`` of the pixels whose ``score`` ``(N,H,W)`` is in each image's lowest ``p`` %."""
    if p <= 0:
        return torch.zeros_like(score, dtype=torch.bool)[:, None]
    q = torch.quantile(score.flatten(1), p / 100, dim=1).view(-1, 1, 1)
    return (score <= q)[:, None]


class _ClipPixels(Regularizer):
    """Set the pixels whose ``score(x - center, g)`` ``(N,H,W)`` is in the lowest ``p`` % to ``center``."""

    def __init__(self, p: float, center, kind: str, score) -> None:
        self.p, self.center, self.score = _percentile(p, "percentile"), _center(center), score
        self.name = f"{kind}({self.p:g} %)"

    def on_image(self, x, g, t):
        c = self.center.to(x)
        mask = _below(self.score(x - c, g), self.p)
        return torch.where(mask, c.expand_as(x), x)


class _ClipGradient(Regularizer):
    def __init__(self, max_norm: float) -> None:
        self.max_norm = check_number(max_norm, "max_norm", above=0)
        self.name = f"clip_gradient({self.max_norm:g})"

    def on_gradient(self, g, t):
        norm = g.flatten(1).norm(dim=1).view(-1, *([1] * (g.dim() - 1)))
        return g * (self.max_norm / norm.clamp(min=self.max_norm))


def decay(theta: float, *, center: float | tuple[float, float, float] = 0.5) -> Regularizer:
    """``x <- center + (1 - θ)(x - center)`` after every step (Yosinski et al.'s L2 decay)."""
    return _Decay(theta, center)


def blur_every(sigma: float, every: int = 4) -> Regularizer:
    """A Gaussian blur of standard deviation ``sigma`` pixels every ``every`` steps (steps 0, k, 2k, ...)."""
    return _BlurEvery(sigma, every)


def clip_norm(percentile: float, *, center: float | tuple[float, float, float] = 0.5) -> Regularizer:
    """Set the pixels with the smallest colour norm ``|x - center|`` (the lowest ``percentile`` %) to ``center``."""
    return _ClipPixels(percentile, center, "clip_norm", lambda d, g: d.norm(dim=1))


def clip_contribution(percentile: float, *, center: float | tuple[float, float, float] = 0.5) -> Regularizer:
    """Set the pixels with the smallest contribution ``|Σ_c (x - center)_c g_c|`` (lowest ``percentile`` %) to
    ``center``."""
    return _ClipPixels(percentile, center, "clip_contribution", lambda d, g: (d * g).sum(1).abs())


def clip_gradient(max_norm: float) -> Regularizer:
    """Rescale each image's gradient to L2 norm at most ``max_norm`` before the update."""
    return _ClipGradient(max_norm)
