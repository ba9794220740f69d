"""Reading a student's answer: what every lesson's checks share."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import Wrong

__all__ = ["number"]


def number(answer: Any, what: str) -> float:
    """``answer`` as a float (a Python/numpy number or a one-element tensor/array), else ``Wrong``
    saying that ``what`` should be one number and what it got."""
    if isinstance(answer, (bool, str)) or answer is None:
        raise Wrong(f"{what} should be one number (a float), got {type(answer).__name__} {answer!r}")
    if isinstance(answer, (torch.Tensor, np.ndarray)):
        size = answer.size if isinstance(answer, np.ndarray) else answer.numel()
        if size != 1:
            raise Wrong(f"{what} should be one number, got shape {tuple(answer.shape)}: "
                        f"reduce it (sum, mean or index) to a scalar")
        return float(answer.reshape(-1)[0])
    try:
        return float(answer)
    except (TypeError, ValueError):
        raise Wrong(f"{what} should be one number (a float), got {type(answer).__name__}") from None
