"""The average Fourier magnitude spectrum of the course photos: the natural-image spectrum that MaCo
(Fel et al., NeurIPS 2023; ``params.maco``, lessons 08 and 09) keeps fixed while it optimizes the phase.

Computed once from the 1000 course photos (offline) at the size asked for, and cached in the
results cache (``runs_dir()``), keyed by the photos' hashes and the size.
"""
from __future__ import annotations

import torch

from .cache import _FORMAT, _cache_load, _cache_save, _digest, runs_dir
from .photos import PhotoSet

__all__ = ["natural_spectrum", "magnitude_spectrum", "spectrum_distance"]


def magnitude_spectrum(images: torch.Tensor) -> torch.Tensor:
    """``mean_n |rfft2(x_n - mean(x_n))|`` per colour channel (orthonormal FFT): ``(3, H, W//2+1)``.

    ``images``: ``(N,3,H,W)`` in [0,1] (float) or uint8. Each image's per-channel mean is
    removed first, so the DC term measures nothing but the brightness spread.
    """
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    x = x - x.mean((-2, -1), keepdim=True)
    return torch.fft.rfft2(x, norm="ortho").abs().mean(0)


def spectrum_distance(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """How far each image's magnitude spectrum is from ``reference`` in shape, whatever the contrast: ``(N,)``.

    ``images``: ``(N,3,H,W)`` in [0,1]; ``reference``: a magnitude ``(3, H, W//2+1)`` (``natural_spectrum``).
    Per image, ``A = |rfft2(x - mean(x))|`` per channel (orthonormal); over every rfft bin but the
    DC one, ``ℓ = log A - mean(log A)`` (one mean over the channels and bins, so one scale per image
    is removed); the distance is ``mean |ℓ_image - ℓ_reference|``: 0 when the spectrum is the
    reference times a constant; ``d`` means a typical bin is off by a factor of about ``e^d`` (lesson 08).
    ``images`` may also be uint8 (0..255), as ``magnitude_spectrum``.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"spectrum_distance needs images (N, 3, H, W), got {got}")
    h, w = images.shape[-2:]
    if not isinstance(reference, torch.Tensor) or tuple(reference.shape) != (3, h, w // 2 + 1):
        got = tuple(reference.shape) if isinstance(reference, torch.Tensor) else type(reference).__name__
        raise ValueError(f"reference must be a magnitude spectrum (3, {h}, {w // 2 + 1}) for {h}x{w} images, got {got}")
    x = images.detach().double() / (255 if images.dtype == torch.uint8 else 1)
    a = torch.fft.rfft2(x - x.mean((-2, -1), keepdim=True), norm="ortho").abs()     # (N, 3, H, W//2+1)
    keep = torch.ones(h, w // 2 + 1, dtype=torch.bool, device=a.device)
    keep[0, 0] = False                                                                # the DC bin: 0 after the mean
    la = a[..., keep].clamp_min(1e-12).log().flatten(1)                               # (N, 3 * bins)
    lr = reference.detach().to(a.device, torch.float64)[..., keep].clamp_min(1e-12).log().flatten()
    la, lr = la - la.mean(1, keepdim=True), lr - lr.mean()
    return (la - lr).abs().mean(1).float()


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
