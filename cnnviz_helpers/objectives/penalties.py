"""Penalties on the image in [0,1] (subtract ``lambda * penalty``): l2, alpha_norm, tv, blur."""
from __future__ import annotations

import math

import torch

from .._checks import check_number
from .._util import gaussian_blur
from .base import Context, Objective, _fmt, _mean_per_image


def _check_positive(v, what: str) -> float:
    return check_number(v, what, above=0, must="a positive number")


def l2(center: float = 0.5) -> Objective:
    """Penalty ``mean (x - center)^2`` over the pixels of each image (Simonyan's L2, lesson 08).

    ``center=0.5``: the mean colour, i.e. zero in the model's normalized input
    space. The mean (``||x - c||^2 / 3HW``) keeps λ independent of image size.
    """
    c = float(center)
    return Objective(lambda ctx: _mean_per_image((ctx.image - c).pow(2)), name=f"l2(center={_fmt(c)})")


def alpha_norm(alpha: float = 6.0, center: float = 0.5) -> Objective:
    """Penalty ``mean |x - center|^alpha``: the α-norm ``||x||_α^α`` of Mahendran & Vedaldi (lesson 09).

    A large α (6) barely touches ordinary pixels and strongly punishes extreme ones.
    """
    a, c = _check_positive(alpha, "alpha"), float(center)
    return Objective(lambda ctx: _mean_per_image((ctx.image - c).abs().pow(a)),
                     name=f"alpha_norm(alpha={_fmt(a)})")


def tv(beta: float = 2.0, *, eps: float = 1e-8) -> Objective:
    """Total-variation penalty ``mean_ij ((x[i,j+1]-x[i,j])^2 + (x[i+1,j]-x[i,j])^2 + eps)^(β/2)`` (lesson 09).

    Per channel, over the ``(H-1) x (W-1)`` positions that have both a right and
    a lower neighbour. β = 2 is the squared gradient; β < 2 lets sharp edges
    through (Mahendran & Vedaldi use β in 1..2). ``eps`` keeps the gradient
    finite on flat images when β < 2.
    """
    b = _check_positive(beta, "beta")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")

    def fn(ctx: Context) -> torch.Tensor:
        x = ctx.image
        dx = x[..., :-1, 1:] - x[..., :-1, :-1]
        dy = x[..., 1:, :-1] - x[..., :-1, :-1]
        d2 = dx.pow(2) + dy.pow(2) + eps
        return _mean_per_image(d2 if b == 2 else d2.pow(b / 2))

    return Objective(fn, name=f"tv(beta={_fmt(b)})")


def gaussian_kernel(sigma: float, *, radius: int | None = None) -> torch.Tensor:
    """A normalized 1-D Gaussian ``(2r+1,)`` with ``r = ceil(3 sigma)`` by default."""
    s = _check_positive(sigma, "sigma")
    r = int(math.ceil(3 * s)) if radius is None else int(radius)
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-t.pow(2) / (2 * s * s))
    return k / k.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return gaussian_blur(x, sigma, padding="replicate")


def blur(sigma: float = 1.0) -> Objective:
    """Penalty ``mean (x - G_σ * x)^2``: the energy the Gaussian blur would remove (lesson 08).

    The penalty form of Yosinski et al.'s "blur every few steps": it pushes
    the image towards low frequencies. Borders are replicated.
    """
    s = _check_positive(sigma, "sigma")
    return Objective(lambda ctx: _mean_per_image((ctx.image - _blur(ctx.image, s)).pow(2)),
                     name=f"blur(sigma={_fmt(s)})")
