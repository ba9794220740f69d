"""The average Fourier magnitude spectrum of the course photos: the natural-image spectrum that MaCo
(Fel et al., NeurIPS 2023; ``params.maco``, lessons 08 and 09) keeps fixed while it optimizes the phase.

Computed once from the 1000 course photos (offline) at the size asked for, and cached in the
results cache (``runs_dir()``), keyed by the photos' hashes and the size.
"""
from __future__ import annotations

import torch

from .cache import _FORMAT, _cache_load, _cache_save, _digest, runs_dir
from .photos import PhotoSet

__all__ = ["natural_spectrum", "magnitude_spectrum"]


def magnitude_spectrum(images: torch.Tensor) -> torch.Tensor:
    """``mean_n |rfft2(x_n - mean(x_n))|`` per colour channel (orthonormal FFT): ``(3, H, W//2+1)``.

    ``images``: ``(N,3,H,W)`` in [0,1] (float) or uint8. Each image's per-channel mean is
    removed first, so the DC term measures nothing but the brightness spread.
    """
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    x = x - x.mean((-2, -1), keepdim=True)
    return torch.fft.rfft2(x, norm="ortho").abs().mean(0)


def natural_spectrum(size: int = 224, *, cache: bool = True, progress: bool = False) -> torch.Tensor:
    """The average magnitude spectrum of the 1000 course photos at ``size`` x ``size``: ``(3, S, S//2+1)``.

    >>> natural_spectrum(224).shape         # torch.Size([3, 224, 113])
    """
    photos = PhotoSet(size=size)
    key = _digest("natural_spectrum", photos.key, _FORMAT)
    path = runs_dir() / "spectra" / f"natural_{photos.size}.pt"
    if cache:
        hit = _cache_load(path, key)
        if hit is not None:
            return hit["spectrum"]
    total, n = None, 0
    for _, batch in photos.batches(100, progress=progress, cache=cache):
        s = magnitude_spectrum(batch) * batch.shape[0]
        total = s if total is None else total + s
        n += batch.shape[0]
    spectrum = total / n
    if cache:
        _cache_save(path, {"key": key, "spectrum": spectrum})
    return spectrum
