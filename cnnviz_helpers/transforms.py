"""Random transforms applied to the image before each forward pass of an optimization.

Transformation robustness (Mordvintsev et al. 2015; Olah et al. 2017): if the
image must excite the network *after* a random shift, scaling or rotation,
the optimizer cannot rely on exact pixel patterns, and high-frequency noise
disappears. Every transform is a pure function ``t(x, generator) -> x`` on
``(N,3,H,W)`` tensors, differentiable, drawing its randomness **only** from the
``torch.Generator`` it is given (same generator state, same result). One draw
per call is shared by the whole batch.

    >>> g = torch.Generator().manual_seed(0)
    >>> t = compose(pad(12), jitter(8), random_scale([0.95, 1.0, 1.05]), random_rotate(range(-10, 11)))
    >>> y = t(x, g)                   # x: (1,3,224,224) -> y: about (1,3,240,240)
    >>> t                              # compose(pad(12, mode='constant'), jitter(8), ...)

Introduced in lesson 08; ``optimize(..., transforms=t, generator=g)`` calls them.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from ._checks import check_int, check_number

__all__ = [
    "Transform",
    "jitter",
    "pad",
    "random_scale",
    "random_rotate",
    "rotate",
    "compose",
    "standard",
    "PAD_MODES",
]

PAD_MODES = ("constant", "reflect", "replicate")
JITTER_MODES = ("crop", "roll")


class Transform:
    """``fn(x, generator) -> x`` with a readable ``repr``. Call as ``t(x, generator)``."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor], name: str) -> None:
        self.fn = fn
        self.name = name

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"{self.name} needs an explicit torch.Generator as its second argument, "
                            f"got {type(generator).__name__}: e.g. t(x, torch.Generator().manual_seed(0))")
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"{self.name} takes images (N,C,H,W), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        return self.fn(x, generator)

    def __repr__(self) -> str:
        return self.name


def _draw(n: int, g: torch.Generator) -> int:
    """A uniform integer in 0..n-1 from ``g`` (on the CPU, whatever the image's device)."""
    return int(torch.randint(n, (1,), generator=g).item())


def _nonneg_int(v, what: str) -> int:
    return check_int(v, what, lo=0)


def jitter(d: int, *, mode: str = "crop") -> Transform:
    """Random translation by up to ``d`` pixels in each direction.

    ``mode="crop"`` (Lucid's): a random ``(H-d) x (W-d)`` window, offsets
    ``0..d`` (the image shrinks by ``d``); ``"roll"`` (DeepDream's): a circular
    shift by ``-d..d`` that keeps the size.
    """
    d = _nonneg_int(d, "jitter d")
    if mode not in JITTER_MODES:
        raise ValueError(f"unknown jitter mode {mode!r}: choose one of {', '.join(JITTER_MODES)}")

    def fn(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        h, w = x.shape[-2:]
        if mode == "roll":
            dy, dx = _draw(2 * d + 1, g) - d, _draw(2 * d + 1, g) - d
            return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
        if d >= min(h, w):
            raise ValueError(f"jitter({d}) cannot crop a {h}x{w} image: d must be smaller than both sides")
        dy, dx = _draw(d + 1, g), _draw(d + 1, g)
        return x[..., dy:dy + h - d, dx:dx + w - d]

    return Transform(fn, f"jitter({d}" + (")" if mode == "crop" else ", mode='roll')"))


def pad(width: int, *, mode: str = "constant", value: float = 0.5) -> Transform:
    """Pad ``width`` pixels on every side (``mode``: constant ``value``, reflect or replicate). Not random."""
    width = _nonneg_int(width, "pad width")
    if mode not in PAD_MODES:
        raise ValueError(f"unknown pad mode {mode!r}: choose one of {', '.join(PAD_MODES)}")

    def fn(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if mode == "constant":
            return F.pad(x, (width,) * 4, mode="constant", value=float(value))
        return F.pad(x, (width,) * 4, mode=mode)

    return Transform(fn, f"pad({width}, mode={mode!r})")


def _choices(values, what: str) -> list[float]:
    try:
        vals = [float(v) for v in values]
    except TypeError:
        raise TypeError(f"{what} must be a sequence of numbers, got {values!r}") from None
    if not vals:
        raise ValueError(f"{what} is empty: give at least one value")
    return vals


def random_scale(scales: Iterable[float]) -> Transform:
    """Resize by a factor drawn uniformly from ``scales`` (bilinear): ``H -> round(H*s)``."""
    vals = _choices(scales, "random_scale's scales")
    if any(s <= 0 for s in vals):
        raise ValueError(f"scales must be positive, got {vals}")

    def fn(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        s = vals[_draw(len(vals), g)]
        if s == 1.0:
            return x
        h, w = x.shape[-2:]
        return F.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear",
                             align_corners=False)

    return Transform(fn, f"random_scale({_short(vals)})")


def rotate(x: torch.Tensor, degrees: float, *, padding_mode: str = "zeros") -> torch.Tensor:
    """Rotate ``(N,C,H,W)`` by ``degrees`` counter-clockwise about the centre, same size, bilinear.

    Correct for non-square images: the rotation is done in pixel units (the
    same convention as ``torchvision.transforms.functional.rotate``).
    """
    h, w = x.shape[-2:]
    a = math.radians(degrees)
    cos, sin = math.cos(a), math.sin(a)
    # output pixel (u, v) samples input at R^-1 (u, v); in normalized coords x spans W, y spans H
    theta = torch.tensor([[cos, -sin * h / w, 0.0], [sin * w / h, cos, 0.0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def random_rotate(degrees: Iterable[float], *, padding_mode: str = "zeros") -> Transform:
    """Rotate by an angle (degrees, counter-clockwise) drawn uniformly from ``degrees``."""
    vals = _choices(degrees, "random_rotate's degrees")
    modes = ("zeros", "border", "reflection")
    if padding_mode not in modes:
        raise ValueError(f"unknown padding_mode {padding_mode!r}: choose one of {', '.join(modes)}")

    def fn(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        a = vals[_draw(len(vals), g)]
        return x if a == 0 else rotate(x, a, padding_mode=padding_mode)

    return Transform(fn, f"random_rotate({_short(vals)})")


def _short(vals: Sequence[float]) -> str:
    txt = [f"{v:g}" for v in vals]
    return "[" + (", ".join(txt) if len(txt) <= 5 else f"{txt[0]}, {txt[1]}, ..., {txt[-1]}") + "]"


def compose(*transforms: Transform | Callable | Sequence) -> Transform:
    """Apply transforms left to right, all drawing from the same generator.

    Accepts transforms or a single list of them; ``compose()`` is the identity.
    """
    if len(transforms) == 1 and isinstance(transforms[0], (list, tuple)):
        transforms = tuple(transforms[0])
    for t in transforms:
        if not callable(t):
            raise TypeError(f"compose takes transforms (callables t(x, generator)), got {type(t).__name__} {t!r}")

    def fn(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        for t in transforms:
            x = t(x, g)
        return x

    return Transform(fn, "compose(" + ", ".join(repr(t) for t in transforms) + ")")


def standard(scale: float = 1.0) -> Transform:
    """Lucid's standard transforms: pad 12 (grey), jitter 8, scale 0.9..1.1, rotate -10..10°, jitter 4.

    ``scale`` multiplies the pixel amounts (for smaller images: ``scale=0.5`` at 112 px).
    """
    check_number(scale, "scale", above=0, must="a positive number")
    p, j1, j2 = (max(1, round(v * scale)) for v in (12, 8, 4))
    return compose(
        pad(p, mode="constant", value=0.5),
        jitter(j1),
        random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
        random_rotate(list(range(-10, 11)) + 5 * [0]),
        jitter(j2),
    )
