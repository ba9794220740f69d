"""Input checks shared by the helpers (private): the image convention ``(N,3,H,W)`` float in [0,1],
integers, numbers, choices, (h, w) sizes and layer names.

Each check raises ``TypeError``/``ValueError`` naming the argument, what was
found and how to fix it, before any work starts. It never converts or
clamps: a wrong image is refused, not guessed at (``images.load_image`` is
the one place that converts integer images, with their natural scale).
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import torch

__all__ = ["PIXEL_TOLERANCE", "image_shape", "check_float", "check_range", "check_image", "check_int",
           "check_number", "check_choice", "check_size", "check_index", "check_layer_name"]

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


# ---------------------------------------------------------------- arguments other than images

def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_int(value: object, name: str, *, lo: int | None = None, hi: int | None = None, must: str | None = None,
              error: type[Exception] = ValueError) -> int:
    """``value`` as an ``int`` in ``lo..hi`` (bounds inclusive, ``None``: open); ``bool`` is refused.

    The message reads ``"{name} must be {must}, got {value!r}"``, ``must`` defaulting
    to "an integer >= lo" or "an integer in lo..hi".
    """
    if not _is_int(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        if must is None:
            must = (f"an integer in {lo}..{hi}" if lo is not None and hi is not None
                    else f"an integer >= {lo}" if lo is not None else f"an integer <= {hi}" if hi is not None
                    else "an integer")
        raise error(f"{name} must be {must}, got {value!r}")
    return int(value)


def check_number(value: object, name: str, *, lo: float | None = None, above: float | None = None,
                 hi: float | None = None, must: str | None = None) -> float:
    """``value`` as a finite ``float``: ``>= lo``, ``> above``, ``<= hi`` (each optional); ``bool`` is refused."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    ok = ok and (lo is None or value >= lo) and (above is None or value > above) and (hi is None or value <= hi)
    if not ok:
        if must is None:
            parts = [f">= {lo}" if lo is not None else "", f"> {above}" if above is not None else "",
                     f"<= {hi}" if hi is not None else ""]
            must = " ".join(["a number"] + [p for p in parts if p])
        raise ValueError(f"{name} must be {must}, got {value!r}")
    return float(value)


def check_choice(value: Any, choices: Sequence, what: str, *, hint: str = "") -> Any:
    """``value`` if it is one of ``choices``; else ``ValueError: unknown {what} 'x': choose one of a, b, c{hint}``."""
    if value not in choices:
        quote = not all(isinstance(c, str) for c in choices)  # (None, 'max', 'mean'): show them as Python values
        names = ", ".join(repr(c) if quote else str(c) for c in choices)
        raise ValueError(f"unknown {what} {value!r}: choose one of {names}{hint}")
    return value


def check_size(value: object, name: str) -> tuple[int, int]:
    """An int or an ``(h, w)`` pair of ints, each >= 1, as ``(h, w)`` (a patch, a window, a stride)."""
    v = (value, value) if _is_int(value) else value
    if not isinstance(v, (tuple, list)) or len(v) != 2 or not all(_is_int(a) for a in v):
        raise ValueError(f"{name} must be an int or an (h, w) pair of ints, got {value!r}")
    if min(v) < 1:
        raise ValueError(f"{name} must be >= 1, got {tuple(v)}")
    return int(v[0]), int(v[1])


def check_index(value: object, n: int, what: str, *, where: str = "valid indices are") -> int:
    """An ``int`` in ``0..n-1``; else ``IndexError: {what} 7 is out of range: {where} 0..n-1``."""
    if not _is_int(value) or not 0 <= value < n:
        raise IndexError(f"{what} {value!r} is out of range: {where + ' ' if where else ''}0..{n - 1}")
    return int(value)


def check_layer_name(name: object) -> str:
    """A layer name is a string (a dotted module name or a lecture alias): anything else is a ``TypeError``."""
    if not isinstance(name, str):
        raise TypeError(f"a layer name must be a string, got {type(name).__name__}: {name!r}")
    return name
