"""Animated GIFs of a run (lesson 08): ``FrameRecorder`` (a callback) and ``save_gif``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ._checks import check_int
from ._util import to_uint8

if TYPE_CHECKING:
    from ._loop import Step

__all__ = ["FrameRecorder", "save_gif"]


class FrameRecorder:
    """A callback that keeps every ``every``-th scored image as an ``(H,W,3)`` uint8 frame.

    ``index``: which image of the batch; ``size``: longer side of the frames
    (``None``: as is). Use with ``optimize(..., callback=rec)`` then
    ``save_gif(rec.frames, "run.gif")``.
    """

    def __init__(self, every: int = 1, *, index: int = 0, size: int | None = None) -> None:
        check_int(every, "every", lo=1, must="a positive integer")
        self.every, self.index, self.size = int(every), int(index), size
        self.frames: list[np.ndarray] = []

    def __call__(self, step: Step) -> None:
        if step.step % self.every == 0 or step.step == step.steps - 1:
            if not 0 <= self.index < step.image.shape[0]:
                raise IndexError(f"FrameRecorder index {self.index} is out of range for a batch of "
                                 f"{step.image.shape[0]}")
            self.frames.append(_frame(step.image[self.index], self.size))


def _frame(img: torch.Tensor | np.ndarray, size: int | None = None) -> np.ndarray:
    """One GIF frame: ``(H,W,3)`` uint8 from an image ``(3,H,W)``/``(H,W,3)`` in [0,1], longest side ``size``."""
    from PIL import Image

    a = img.detach().float().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    a = np.squeeze(a)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"a frame must be an image (3,H,W) or (H,W,3), got shape {a.shape}")
    if a.dtype != np.uint8:
        a = to_uint8(a)
    if size is not None and max(a.shape[:2]) != size:
        s = size / max(a.shape[:2])
        a = np.asarray(Image.fromarray(a).resize((max(1, round(a.shape[1] * s)), max(1, round(a.shape[0] * s))),
                                                 Image.BILINEAR))
    return a


def save_gif(frames: Sequence[np.ndarray | torch.Tensor], path: str | os.PathLike, *, duration_ms: int = 80,
             loop: int = 0) -> Path:
    """Write frames (``(H,W,3)`` uint8 or images in [0,1]) as an animated GIF with PIL; returns the path.

    ``duration_ms`` per frame; ``loop=0`` repeats forever. All frames must have one size.
    """
    from PIL import Image

    if len(frames) == 0:
        raise ValueError("save_gif needs at least one frame (did the FrameRecorder run?)")
    arrs = [_frame(f) for f in frames]
    shapes = {a.shape for a in arrs}
    if len(shapes) != 1:
        raise ValueError(f"all frames must have the same size, got {sorted(shapes)}")
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"save_gif writes GIF files: the path must end in .gif, got {str(path)!r}")
    imgs = [Image.fromarray(a) for a in arrs]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=int(duration_ms), loop=int(loop),
                 optimize=False)
    return path
