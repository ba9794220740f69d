"""Input checks shared by the helpers (private): the image convention ``(N,3,H,W)`` float in [0,1].

Each check raises ``TypeError``/``ValueError`` naming the argument, what was
found and how to fix it, before any work starts. It never converts or
clamps: a wrong image is refused, not guessed at (``images.load_image`` is
the one place that converts integer images, with their natural scale).
"""
from __future__ import annotations

import math

import torch

__all__ = ["PIXEL_TOLERANCE", "image_shape", "check_float", "check_range", "check_image"]

PIXEL_TOLERANCE = 1e-6  # rounding slack around [0,1] (e.g. a resize or a denormalize)


def image_shape(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """``x`` as ``(N,3,H,W)`` (a ``(3,H,W)`` image gets a batch axis); any dtype. Raises on another shape."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (N,3,H,W) in [0,1], got {type(x).__name__} "
                        f"(load_image turns paths, PIL images and arrays into one)")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N,3,H,W) or (3,H,W), got {tuple(x.shape)}")
    return x


def check_float(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Refuse integer and bool tensors, saying how to convert them."""
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor in [0,1], got dtype {x.dtype}: convert it with "
                        f"x.float() / 255 for uint8 pixels (load_image(x) does that for uint8 and uint16)")
    return x


def check_range(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Refuse values outside [0,1] (up to ``PIXEL_TOLERANCE``), NaN and infinities, naming the range found."""
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))  # one pass; NaN propagates into both
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} contains NaN or infinite values (found range [{lo}, {hi}]): "
                         f"a course image holds pixel values in [0,1]")
    if lo < -PIXEL_TOLERANCE or hi > 1 + PIXEL_TOLERANCE:
        raise ValueError(
            f"{name} must hold pixel values in [0,1], got values in [{lo:.3g}, {hi:.3g}]. Course models "
            f"normalize inside: undo a normalization with model.denormalize(x); divide 0..255 values by 255"
        )
    return x


def check_image(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """The whole convention: shape ``(N,3,H,W)``/``(3,H,W)``, a float dtype, finite values in [0,1].

    Returns ``x`` as ``(N,3,H,W)`` (same storage; nothing is copied or clamped).
    """
    return check_range(check_float(image_shape(x, name), name), name)
