"""Small tensor utilities shared by several modules (private): one of each.

- ``device_of(model)``: the device of the model's first parameter (or buffer), else the CPU.
- ``size_pair(v)``: an int or an (h, w) pair as ``(h, w)`` ints.
- ``to_uint8(a)``: [0,1] floats to 8-bit, rounded.
- ``gaussian_blur(x, sigma, padding=)``: a separable Gaussian blur of ``(N,C,H,W)``.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["device_of", "size_pair", "to_uint8", "gaussian_blur"]


def device_of(model: nn.Module) -> torch.device:
    """Where ``model`` runs: the device of its first parameter, else of its first buffer, else the CPU."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    """``224 -> (224, 224)``; ``(h, w) -> (h, w)`` as ints (no range check)."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def to_uint8(a: np.ndarray) -> np.ndarray:
    """Pixel values in [0,1] as uint8, rounded to the nearest level (values outside [0,1] clipped).

    In numpy on purpose: one pass, no intra-op thread pool (the dataset decodes in threads).
    """
    return np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8)


def gaussian_blur(x: torch.Tensor, sigma: float, *, padding: str = "reflect") -> torch.Tensor:
    """Gaussian blur of ``(N,C,H,W)``: a separable kernel of radius ``ceil(3 sigma)``, same size out.

    ``padding="reflect"`` (the default) cuts the radius to ``size-1`` on a small image
    (reflection needs it) and renormalizes the kernel; ``"replicate"`` repeats the border.
    """
    r = int(math.ceil(3 * sigma))
    c = x.shape[1]
    if padding == "reflect":
        pad_h, pad_w = min(r, x.shape[-2] - 1), min(r, x.shape[-1] - 1)
    else:
        pad_h = pad_w = r

    def kernel(p: int) -> torch.Tensor:
        t = torch.arange(-p, p + 1, dtype=x.dtype, device=x.device)
        k = torch.exp(-t ** 2 / (2 * sigma ** 2))
        return k / k.sum()

    y = F.pad(x, (pad_w, pad_w, 0, 0), mode=padding)
    y = F.conv2d(y, kernel(pad_w).view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    y = F.pad(y, (0, 0, pad_h, pad_h), mode=padding)
    return F.conv2d(y, kernel(pad_h).view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
