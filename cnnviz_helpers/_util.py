"""Small tensor utilities shared by several modules (private): one of each.

- ``device_of(model)``: the device of the model's first parameter (or buffer), else the CPU.
- ``size_pair(v)``: an int or an (h, w) pair as ``(h, w)`` ints.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["device_of", "size_pair"]


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
