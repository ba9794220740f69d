"""The one image convention of the course: ``(N,3,H,W)`` float in [0,1].

Load from a path, PIL image, numpy array or tensor, in any PIL mode (L, LA,
RGBA, P, I;16, CMYK ...), to RGB; resize and centre-crop; back to an
``(H,W,3)`` numpy array for plotting. Introduced in lesson 03.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

__all__ = [
    "MIN_SIDE",
    "MAX_PIXELS",
    "ImageLoadError",
    "load_image",
    "pil_to_tensor",
    "resize_short_side",
    "resize",
    "center_crop",
    "to_numpy",
    "check_image",
]

MIN_SIDE = 8
MAX_PIXELS = 50_000_000


class ImageLoadError(ValueError):
    """A file that is missing, truncated, not an image, too small or too large."""


def _rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB; alpha is composited on white, 16-bit scaled down."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") else max(float(a.max()), 1.0)
        img = Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return img.convert("RGB")


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image (any mode) -> ``(1,3,H,W)`` float32 in [0,1]."""
    a = np.asarray(_rgb(img)).astype(np.float32)  # one conversion, in place after it (5x faster than
    a /= 255.0                                      # asarray(dtype=float32) / 255 then a copy; same bits)
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0)


def check_image(x: torch.Tensor, name: str = "image") -> torch.Tensor:
    """Validate the course convention; returns ``x`` as (N,3,H,W). Raises with the bad shape or range."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (N,3,H,W) in [0,1], got {type(x).__name__}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N,3,H,W) or (3,H,W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor in [0,1], got dtype {x.dtype} (divide uint8 by 255)")
    h, w = x.shape[-2:]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"{name} is {h}x{w}: smaller than the minimum {MIN_SIDE}x{MIN_SIDE}")
    return x


def load_image(src: Any, *, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """Load ``src`` as ``(1,3,H,W)`` float32 in [0,1] on the CPU.

    ``src``: a path (str or Path), a PIL image, an ``(H,W)``/``(H,W,C)`` numpy
    array (uint8 in 0..255, uint16 in 0..65535, or float in [0,1]), or a tensor
    already in the convention. Refuses (``ImageLoadError``, naming the file and
    the limit) images smaller than 8x8 or larger than ``max_pixels`` (50 MP):
    it does not downscale silently.
    """
    if isinstance(src, torch.Tensor):
        x = check_image(src.detach().float().cpu(), "tensor image")
        return x
    if isinstance(src, np.ndarray):
        return _from_array(src)
    if isinstance(src, Image.Image):
        _check_size(src.size, "PIL image", max_pixels)
        return pil_to_tensor(src)
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            raise FileNotFoundError(f"image file not found: {str(path)!r}")
        if path.is_dir():
            raise ImageLoadError(f"{str(path)!r} is a folder, not an image file")
        try:
            with Image.open(path) as img:
                _check_size(img.size, repr(str(path)), max_pixels)
                img.load()
                return pil_to_tensor(img)
        except ImageLoadError:
            raise
        except UnidentifiedImageError as e:
            raise ImageLoadError(f"{str(path)!r} is not an image file PIL can read") from e
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageLoadError(f"{str(path)!r} could not be decoded (truncated or corrupt?): {e}") from e
    raise TypeError(
        f"cannot load an image from {type(src).__name__}: pass a path, a PIL image, a numpy array or a tensor"
    )


def _check_size(size: tuple[int, int], what: str, max_pixels: int) -> None:
    w, h = size
    if min(w, h) < MIN_SIDE:
        raise ImageLoadError(f"{what} is {w}x{h} pixels: smaller than the minimum {MIN_SIDE}x{MIN_SIDE}")
    if w * h > max_pixels:
        raise ImageLoadError(
            f"{what} is {w}x{h} = {w * h / 1e6:.1f} megapixels, above the limit of {max_pixels / 1e6:.0f} MP: "
            f"refusing to load it (downscale it first, e.g. PIL's Image.thumbnail)"
        )


def _from_array(a: np.ndarray) -> torch.Tensor:
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"an image array must be (H,W) or (H,W,C) with C in 1..4, got shape {a.shape}")
    if a.dtype == np.uint8:
        f = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / 65535.0
    elif np.issubdtype(a.dtype, np.floating):
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        if lo < 0 or hi > 1:
            raise ValueError(f"a float image array must lie in [0,1], got values in [{lo:.3g}, {hi:.3g}]")
        f = a.astype(np.float32)
    else:
        raise TypeError(f"unsupported image array dtype {a.dtype}: use uint8, uint16 or float in [0,1]")
    c = f.shape[2]
    if c in (2, 4):  # alpha over white
        alpha = f[:, :, -1:]
        f = f[:, :, :-1] * alpha + (1 - alpha)
    if f.shape[2] == 1:
        f = np.repeat(f, 3, axis=2)
    _check_size((f.shape[1], f.shape[0]), "image array", MAX_PIXELS)
    return torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1).unsqueeze(0)


def resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize ``(N,3,H,W)`` to ``size`` (H, W) with antialiased bilinear interpolation, clamped to [0,1]."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def resize_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so that the shorter side is ``size``, keeping the aspect ratio."""
    h, w = x.shape[-2:]
    if h <= w:
        nh, nw = size, max(1, round(w * size / h))
    else:
        nh, nw = max(1, round(h * size / w)), size
    return resize(x, (nh, nw))


def center_crop(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Central ``size`` crop of ``(N,3,H,W)``; raises if the image is smaller."""
    ch, cw = (size, size) if isinstance(size, int) else size
    h, w = x.shape[-2:]
    if ch > h or cw > w:
        raise ValueError(f"cannot crop {ch}x{cw} from a {h}x{w} image")
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top:top + ch, left:left + cw]


def to_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(3,H,W)``/``(1,3,H,W)`` tensor in [0,1] -> ``(H,W,3)`` float numpy for ``imshow`` (clipped)."""
    if isinstance(x, np.ndarray):
        return x
    x = x.detach().float().cpu()
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"to_numpy takes one image, got a batch of {x.shape[0]}")
        x = x[0]
    if x.dim() == 3 and x.shape[0] in (1, 3):
        x = x.permute(1, 2, 0)
    return x.clamp(0, 1).numpy().squeeze()
