"""The one image convention of the course: ``(N,3,H,W)`` float in [0,1].

Load from a path, PIL image, numpy array or tensor, in any PIL mode (L, LA,
RGBA, P, I;16, CMYK ...), to RGB, upright (a file's EXIF orientation is
applied); resize and centre-crop; back to an ``(H,W,3)`` numpy array for
plotting. Introduced in lesson 03.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from . import _checks

__all__ = [
    "load_cropped",
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

# What PIL raises on a hostile file: its own errors, and the kinds its plugins have let through on fuzzed
# files before Pillow fixed them (struct, index, key, type and zero-division errors).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError,
                  ZeroDivisionError, Image.DecompressionBombError, Image.DecompressionBombWarning)
# integer images accepted by load_image, with their natural scale (white = the dtype's maximum)
_INT_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_TENSOR_INT_SCALE = {torch.uint8: 255.0, torch.uint16: 65535.0}


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
    """Validate shape ``(N,3,H,W)``/``(3,H,W)``, a float dtype and sides >= 8; returns ``x`` as (N,3,H,W).

    The pixel range is checked by the helpers themselves (``_checks.check_image`` checks all of it).
    """
    x = _checks.check_float(_checks.image_shape(x, name), name)
    _check_min_side(x, name)
    return x


def _check_min_side(x: torch.Tensor, name: str) -> None:
    h, w = x.shape[-2:]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"{name} is {h}x{w}: smaller than the minimum {MIN_SIDE}x{MIN_SIDE}")


def load_image(src: Any, *, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """Load ``src`` as ``(1,3,H,W)`` float32 in [0,1] on the CPU (a batch tensor keeps its N).

    ``src``: a path (str or Path), a PIL image, an ``(H,W)``/``(H,W,C)`` numpy
    array, or a ``(3,H,W)``/``(N,3,H,W)`` tensor. Integer pixels are taken with
    their natural scale, white = the dtype's maximum: uint8 is divided by 255
    (what ``torchvision.io.read_image`` returns), uint16 by 65535; other integer
    and bool dtypes are refused, saying how to convert. Floats must already lie
    in [0,1]: 0..255 floats or a normalized image raise ``ValueError`` naming
    the range found; nothing is clamped or rescaled by guess.

    Files (and PIL images opened from one) are turned upright by their EXIF
    orientation tag, as a phone photo is displayed. Refuses (``ImageLoadError``,
    naming the file and the size) images smaller than 8x8 or larger than
    ``max_pixels`` (50 MP), and any file PIL cannot decode: truncated, not an
    image, or a decompression bomb. It does not downscale silently.

    >>> x = load_image("cat.jpg")                          # (1, 3, H, W) in [0, 1]
    >>> x = load_image(torchvision.io.read_image("cat.jpg"))  # uint8 (3, H, W): the same tensor
    """
    _check_max_pixels(max_pixels)
    if isinstance(src, torch.Tensor):
        return _from_tensor(src, max_pixels)
    if isinstance(src, np.ndarray):
        return _from_array(src, max_pixels)
    if isinstance(src, Image.Image):
        _check_size(src.size, "PIL image", max_pixels)
        try:  # an image opened from a file (format set) is oriented as a path would be; a derived one is as is
            return pil_to_tensor(ImageOps.exif_transpose(src) if src.format is not None else src)
        except _DECODE_ERRORS as e:
            raise ImageLoadError(f"the PIL image could not be decoded ({type(e).__name__}: {e})") from e
    if isinstance(src, (str, os.PathLike)):
        return _from_file(Path(src), max_pixels)
    raise TypeError(
        f"cannot load an image from {type(src).__name__}: pass a path, a PIL image, a numpy array or a tensor"
    )


def _check_max_pixels(max_pixels: int) -> None:
    _checks.check_int(max_pixels, "max_pixels", lo=MIN_SIDE * MIN_SIDE)
    guard = Image.MAX_IMAGE_PIXELS
    if guard is not None and max_pixels > guard:
        raise ValueError(
            f"max_pixels={max_pixels} is above PIL's decompression-bomb guard PIL.Image.MAX_IMAGE_PIXELS={guard}, "
            f"which refuses such files first: raise that too if you trust your files"
        )


def _from_file(path: Path, max_pixels: int) -> torch.Tensor:
    name = repr(str(path))
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {name}")
    if path.is_dir():
        raise ImageLoadError(f"{name} is a folder, not an image file")
    try:
        with Image.open(path) as img:
            _check_size(img.size, name, max_pixels)
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # upright, as displayed; no copy
            return pil_to_tensor(img)
    except ImageLoadError:
        raise
    except PermissionError as e:
        raise ImageLoadError(f"{name} cannot be read: permission denied") from e
    except UnidentifiedImageError as e:
        raise ImageLoadError(f"{name} is not an image file PIL can read") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(
            f"{name} declares an image too large to decode safely ({e}): refusing it (a decompression bomb, "
            f"or a huge image: downscale it first)"
        ) from e
    except _DECODE_ERRORS as e:
        raise ImageLoadError(f"{name} could not be decoded (truncated or corrupt?): {type(e).__name__}: {e}") from e


def _check_size(size: tuple[int, int], what: str, max_pixels: int) -> None:
    w, h = size
    if min(w, h) < MIN_SIDE:
        raise ImageLoadError(f"{what} is {w}x{h} pixels: smaller than the minimum {MIN_SIDE}x{MIN_SIDE}")
    if w * h > max_pixels:
        raise ImageLoadError(
            f"{what} is {w}x{h} = {w * h / 1e6:.1f} megapixels, above the limit of {max_pixels / 1e6:.0f} MP: "
            f"refusing to load it (downscale it first, e.g. PIL's Image.thumbnail)"
        )


def _from_tensor(t: torch.Tensor, max_pixels: int) -> torch.Tensor:
    x = _checks.image_shape(t.detach(), "tensor image")
    scale = _TENSOR_INT_SCALE.get(x.dtype)
    if scale is not None:
        x = x.cpu().float().div_(scale)  # exactly v / 255 in float32, as for files
    else:
        x = _checks.check_range(_checks.check_float(x, "tensor image"), "tensor image").float().cpu()
    _check_min_side(x, "tensor image")
    _check_size((x.shape[-1], x.shape[-2]), "tensor image", max_pixels)
    return x


def _from_array(a: np.ndarray, max_pixels: int) -> torch.Tensor:
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"an image array must be (H,W) or (H,W,C) with C in 1..4, got shape {a.shape}")
    _check_size((a.shape[1], a.shape[0]), "image array", max_pixels)
    if a.dtype in _INT_SCALE:
        f = a.astype(np.float32)
        f /= _INT_SCALE[a.dtype]
    elif np.issubdtype(a.dtype, np.floating):
        lo, hi = float(a.min()), float(a.max())  # NaN propagates: refused below
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 1:
            raise ValueError(f"a float image array must lie in [0,1], got values in [{lo:.3g}, {hi:.3g}]: "
                             f"divide 0..255 values by 255; undo a normalization first")
        f = a.astype(np.float32)
    else:
        raise TypeError(f"unsupported image array dtype {a.dtype}: use uint8 (0..255), uint16 (0..65535) or float "
                        f"in [0,1], e.g. a.astype(np.float32) / a_white where a_white is your data's white level")
    c = f.shape[2]
    if c in (2, 4):  # alpha over white
        alpha = f[:, :, -1:]
        f = f[:, :, :-1] * alpha + (1 - alpha)
    if f.shape[2] == 1:
        f = np.repeat(f, 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1).unsqueeze(0)


def resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize ``(N,3,H,W)`` (or ``(3,H,W)``) in [0,1] to ``size`` (H, W) with antialiased bilinear interpolation.

    The result is clamped to [0,1] (the filter overshoots at sharp edges); an
    input outside [0,1] is refused, not clamped into a white image.
    """
    x4 = _checks.check_image(x, "resize's x")
    y = _resize(x4, _size_pair(size, "resize's size"))
    return y[0] if x.dim() == 3 else y


def _size_pair(size, what: str) -> tuple[int, int]:
    return _checks.check_size(size, what)


def _resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def resize_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(N,3,H,W)`` (or ``(3,H,W)``) in [0,1] so that its shorter side is ``size``, keeping its aspect."""
    x4 = _checks.check_image(x, "resize_short_side's x")
    _checks.check_int(size, "resize_short_side's size", lo=1, must="an integer side >= 1")
    h, w = x4.shape[-2:]
    if h <= w:
        nh, nw = size, max(1, round(w * size / h))
    else:
        nh, nw = max(1, round(h * size / w)), size
    y = _resize(x4, (nh, nw))
    return y[0] if x.dim() == 3 else y


def center_crop(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Central ``size`` crop of ``(N,3,H,W)``; raises if the image is smaller."""
    ch, cw = (size, size) if isinstance(size, int) else size
    h, w = x.shape[-2:]
    if ch > h or cw > w:
        raise ValueError(f"cannot crop {ch}x{cw} from a {h}x{w} image")
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top:top + ch, left:left + cw]


def load_cropped(image, resize: int, crop: int | tuple[int, int]) -> torch.Tensor:
    """The classifier's view of an image: ``load_image``, shorter side resized to ``resize``, central
    ``crop``. ``(1,3,crop,crop)`` in [0,1] (what ``model.preprocess`` returns, on the CPU)."""
    return center_crop(resize_short_side(load_image(image), resize), crop)


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
