"""Image parameterizations: leaf tensors that an optimizer changes, and a function that renders an image.

A parameterization ``p`` has ``p.parameters()`` (the leaf tensors, ``requires_grad``),
``p()`` -> the image ``(N,3,H,W)`` in [0,1] (differentiable), ``p.image()`` (the
same, detached) and ``p.constrain_()`` (called by ``optimize`` after every step:
plain pixels are clamped back into [0,1]).

- ``pixels(size, init=...)``: the pixels themselves (Simonyan et al.; DeepDream;
  attacks). ``from_image(x)`` starts from a photo.
- ``fft(size, decorrelate=True)``: the Fourier + decorrelated-colour
  parameterization of Olah et al., *Feature Visualization* (Distill 2017), as
  in Lucid/Lucent: the image is ``sigmoid(C · irfft2(s ⊙ spectrum))`` with
  ``s = 1/max(f, 1/max(H,W))^decay`` scaling down high frequencies and ``C``
  a fixed 3x3 matrix that mixes three decorrelated colour components into
  RGB (the square root of ImageNet's colour covariance). Gradient steps on
  the spectrum change the image mostly at low frequencies.
  ``fft_from_image(x)`` starts that parameterization *at a photo* (feature
  accentuation, Hamblin et al. 2024; lesson 09).
- ``maco(size)``: MaCo, the magnitude-constrained parameterization of Fel et al.
  (NeurIPS 2023): only the Fourier *phase* is optimized; the magnitude stays the
  average spectrum of natural images (``dataset.natural_spectrum``, from the
  course photos). It also accumulates the transparency map ``|∂score/∂image|``.

    >>> p = pixels((224, 224), init=0.5, device=model.device)     # a grey image
    >>> q = fft(224, batch=4, generator=torch.Generator().manual_seed(0))
    >>> q().shape                                                   # (4, 3, 224, 224)

Introduced in lesson 08; used by lessons 09-12.
"""
from __future__ import annotations

import numbers


import numpy as np
import torch

from ._checks import check_int, check_number, check_size

__all__ = [
    "Param",
    "PixelParam",
    "FFTParam",
    "MacoParam",
    "maco",
    "pixels",
    "from_image",
    "fft",
    "fft_from_image",
    "COLOR_CORRELATION",
    "decorrelate_colors",
    "spectrum_scale",
]

INITS = ("noise", "zeros", "gray")

# The square root of ImageNet's RGB covariance (Lucid's ``color_correlation_svd_sqrt``), columns
# normalized so the largest has norm 1: decorrelated components -> RGB.
_SVD_SQRT = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32)
COLOR_CORRELATION = torch.from_numpy(_SVD_SQRT / np.max(np.linalg.norm(_SVD_SQRT, axis=0)))


def _size(size) -> tuple[int, int]:
    h, w = check_size(size, "size")
    if h < 8 or w < 8:
        raise ValueError(f"image size {h}x{w} is too small: both sides must be >= 8")
    return h, w


def _batch(batch) -> int:
    return check_int(batch, "batch", lo=1, must="a positive integer")


def _generator(g: torch.Generator | None) -> torch.Generator:
    if g is None:
        return torch.Generator().manual_seed(0)
    if not isinstance(g, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(g).__name__}")
    return g


class Param:
    """Base class: ``parameters()``, ``__call__() -> (N,3,H,W)`` in [0,1], ``image()``, ``constrain_()``."""

    shape: tuple[int, int, int, int]

    def parameters(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def __call__(self) -> torch.Tensor:
        raise NotImplementedError

    def image(self) -> torch.Tensor:
        """The current image, detached: ``(N,3,H,W)`` in [0,1]."""
        with torch.no_grad():
            return self().detach().clone()

    def constrain_(self) -> None:
        """Bring the leaves back into their valid set (after an optimizer step). Default: nothing."""

    @property
    def device(self) -> torch.device:
        return self.parameters()[0].device


class PixelParam(Param):
    """The pixels themselves, ``(N,3,H,W)``; kept in [0,1] by ``constrain_`` (a clamp after each step)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x.detach().clone().requires_grad_(True)
        self.shape = tuple(self.x.shape)  # type: ignore[assignment]

    def parameters(self) -> list[torch.Tensor]:
        return [self.x]

    def __call__(self) -> torch.Tensor:
        return self.x

    def constrain_(self) -> None:
        with torch.no_grad():
            self.x.clamp_(0, 1)

    def __repr__(self) -> str:
        return f"pixels{self.shape}"


def pixels(
    size: int | tuple[int, int],
    *,
    batch: int = 1,
    init: str | float = "gray",
    sd: float = 0.1,
    device: str | torch.device | None = None,
    generator: torch.Generator | None = None,
) -> PixelParam:
    """Plain pixels: ``(batch,3,H,W)`` in [0,1], the parameterization of Simonyan et al. (lesson 08).

    ``init``: ``"gray"`` (0.5 everywhere: the mean colour, i.e. the *zero* image
    of the model's normalized input space for the embedded models), ``"zeros"``
    (black), ``"noise"`` (0.5 + ``sd`` · N(0,1), clamped; drawn from
    ``generator``), or a number in [0,1] (a uniform colour).
    """
    h, w = _size(size)
    n = _batch(batch)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}: choose one of {', '.join(INITS)}, or a number in [0,1]")
        if init == "noise":
            g = _generator(generator)
            x = (0.5 + sd * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1)
        else:
            x = torch.full((n, 3, h, w), 0.5 if init == "gray" else 0.0)
    elif isinstance(init, numbers.Real) and not isinstance(init, bool) and 0 <= init <= 1:
        x = torch.full((n, 3, h, w), float(init))
    else:
        raise ValueError(f"init must be one of {', '.join(INITS)} or a number in [0,1], got {init!r}")
    return PixelParam(x.to(dev))


def from_image(x: torch.Tensor) -> PixelParam:
    """Pixels that start as a copy of ``x`` ``(N,3,H,W)`` in [0,1] (DeepDream, attacks; lessons 10, 12).

    The copy lives on ``x``'s device; ``x`` itself is never modified.
    """
    from .images import check_image

    x = check_image(x, "from_image's x")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"from_image needs an image in [0,1], got values in [{lo:.3g}, {hi:.3g}]")
    return PixelParam(x)


def spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> torch.Tensor:
    """``1 / max(|f|, 1/max(H,W))^decay``: the per-frequency scale of ``fft``, shape ``(H, W//2+1)``.

    ``|f|`` is the frequency magnitude in cycles per pixel (``numpy.fft`` conventions).
    """
    fy = np.fft.fftfreq(h)[:, None]                 # (H, 1)
    fx = np.fft.rfftfreq(w)[None, :]                # (1, W//2+1)
    f = np.sqrt(fx * fx + fy * fy)
    return torch.from_numpy((1.0 / np.maximum(f, 1.0 / max(h, w)) ** decay_power).astype(np.float32))


def decorrelate_colors(t: torch.Tensor) -> torch.Tensor:
    """Mix decorrelated components into RGB: ``rgb[c] = sum_k C[c,k] t[k]`` for ``(N,3,H,W)``."""
    return torch.einsum("ck,nkhw->nchw", COLOR_CORRELATION.to(t.device, t.dtype), t)


class FFTParam(Param):
    """``sigmoid(C · irfft2(scale ⊙ spectrum) / 4)``; the leaf is the spectrum ``(N,3,H,W//2+1,2)`` (real, imag)."""

    _MAGIC = 4.0  # Lucid's fixed divisor, so that the initial image has a small spread

    def __init__(self, spectrum: torch.Tensor, h: int, w: int, decay_power: float, decorrelate: bool) -> None:
        self.spectrum = spectrum.requires_grad_(True)
        self.h, self.w = h, w
        self.decay_power = decay_power
        self.decorrelate = decorrelate
        self.scale = spectrum_scale(h, w, decay_power).to(spectrum.device)[None, None, :, :, None]
        self.shape = (spectrum.shape[0], 3, h, w)

    def parameters(self) -> list[torch.Tensor]:
        return [self.spectrum]

    def __call__(self) -> torch.Tensor:
        z = torch.view_as_complex((self.scale * self.spectrum).contiguous())   # (N,3,H,W//2+1) complex
        t = torch.fft.irfftn(z, s=(self.h, self.w), dim=(-2, -1), norm="ortho") / self._MAGIC  # (N,3,H,W)
        if self.decorrelate:
            t = decorrelate_colors(t)
        return torch.sigmoid(t)

    def __repr__(self) -> str:
        return f"fft{self.shape}(decay_power={self.decay_power}, decorrelate={self.decorrelate})"


def fft(
    size: int | tuple[int, int],
    *,
    batch: int = 1,
    sd: float = 0.01,
    decay_power: float = 1.0,
    decorrelate: bool = True,
    device: str | torch.device | None = None,
    generator: torch.Generator | None = None,
) -> FFTParam:
    """The Fourier + decorrelated-colour parameterization (Olah et al. 2017; lesson 08).

    The spectrum starts as ``sd`` · N(0,1) (drawn from ``generator``), so the
    first image is a faint grey-ish noise around 0.5. ``decay_power=1``: each
    frequency's amplitude is scaled by ``1/|f|``, the ``1/f`` spectrum of
    natural images; 0 turns the scaling off (plain Fourier basis).
    """
    h, w = _size(size)
    n = _batch(batch)
    check_number(sd, "sd", lo=0)
    check_number(decay_power, "decay_power", lo=0)
    g = _generator(generator)
    spec = sd * torch.randn(n, 3, h, w // 2 + 1, 2, generator=g)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return FFTParam(spec.to(dev), h, w, float(decay_power), bool(decorrelate))


_EPS = 1e-4   # fft_from_image clamps pixels into [_EPS, 1 - _EPS]: the logit of 0 or 1 is infinite


def fft_from_image(x: torch.Tensor, *, decorrelate: bool = True, decay_power: float = 1.0) -> FFTParam:
    """The parameterization of ``fft`` started *at* the photo ``x`` ``(N,3,H,W)`` in [0,1]: ``p()`` ≈ ``x``.

    Feature accentuation (Hamblin et al. 2024; lesson 09) optimizes a photo in this basis. Each step of
    ``FFTParam`` is inverted in turn: the sigmoid (a logit), the colour mixing ``C`` (its inverse,
    ``decorrelate=True``), the divisor 4, the inverse real FFT (a forward ``rfft2``, same ``ortho``
    norm) and the ``1/f^decay_power`` scale (divided out). Pixels are first clamped into
    [1e-4, 1 - 1e-4], so ``p()`` reproduces ``x`` up to that clamp (pixels that were exactly 0 or 1
    come back as 1e-4 or 1 - 1e-4) and float32 rounding. A pixel near 0 or 1 sits where the sigmoid is
    flat: gradient steps move it slowly. The spectrum lives on ``x``'s device; ``x`` is not modified.

    >>> p = fft_from_image(x0)                     # x0: (1, 3, 224, 224) in [0, 1]
    >>> (p() - x0).abs().max()                     # ~1e-4 at most (the clamp)
    """
    from .images import check_image

    x = check_image(x, "fft_from_image's x")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("fft_from_image needs a finite image in [0,1]: x has NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"fft_from_image needs an image in [0,1], got values in [{lo:.3g}, {hi:.3g}]")
    check_number(decay_power, "decay_power", lo=0)
    if not isinstance(decorrelate, bool):
        raise TypeError(f"decorrelate must be True or False, got {decorrelate!r}")
    n, _, h, w = x.shape
    _size((h, w))
    with torch.no_grad():
        z = x.detach().to("cpu", torch.float64).clamp(_EPS, 1 - _EPS)       # float64 on the CPU: exact inverse
        t = torch.log(z) - torch.log1p(-z)                                  # the logit: sigmoid's inverse
        if decorrelate:
            inv = torch.linalg.inv(COLOR_CORRELATION.to(torch.float64))
            t = torch.einsum("kc,nchw->nkhw", inv, t)                       # RGB -> decorrelated components
        spec = torch.fft.rfftn(t * FFTParam._MAGIC, s=(h, w), dim=(-2, -1), norm="ortho")
        scale = spectrum_scale(h, w, float(decay_power)).to(torch.float64)
        spec = torch.view_as_real(spec / scale).to(x.device, torch.float32).contiguous()   # (N,3,H,W//2+1,2)
    return FFTParam(spec, h, w, float(decay_power), decorrelate)


class MacoParam(Param):
    """MaCo: ``sigmoid(standardize(irfft2(M ⊙ e^{iφ})))``; the leaf is the phase ``φ`` ``(N,3,H,W//2+1)``,
    the magnitude ``M`` ``(3,H,W//2+1)`` is fixed. ``transparency``: ``Σ_steps |∂score/∂image|`` ``(N,3,H,W)``,
    filled by ``optimize`` (it calls ``observe_image_grad`` after every step)."""

    def __init__(self, phase: torch.Tensor, magnitude: torch.Tensor, h: int, w: int) -> None:
        self.phase = phase.requires_grad_(True)
        self.magnitude = magnitude.to(phase.device, phase.dtype)
        self.h, self.w = h, w
        self.shape = (phase.shape[0], 3, h, w)
        self.transparency = torch.zeros(self.shape, device=phase.device)

    def parameters(self) -> list[torch.Tensor]:
        return [self.phase]

    def signal(self) -> torch.Tensor:
        """The image before the sigmoid: ``(N,3,H,W)``, zero mean and unit variance per image; its Fourier
        magnitude is ``M`` up to that one scale factor."""
        z = torch.polar(self.magnitude.expand_as(self.phase), self.phase)
        t = torch.fft.irfftn(z, s=(self.h, self.w), dim=(-2, -1), norm="ortho")
        t = t - t.mean((1, 2, 3), keepdim=True)
        return t / (t.std(dim=(1, 2, 3), keepdim=True) + 1e-8)

    def __call__(self) -> torch.Tensor:
        return torch.sigmoid(self.signal())

    def observe_image_grad(self, grad: torch.Tensor) -> None:
        """Add ``|grad|`` (the gradient of the score with respect to this step's image) to ``transparency``."""
        self.transparency += grad.detach().abs()

    def __repr__(self) -> str:
        return f"maco{self.shape}"


def maco(
    size: int | tuple[int, int],
    *,
    batch: int = 1,
    spectrum: torch.Tensor | None = None,
    device: str | torch.device | None = None,
    generator: torch.Generator | None = None,
) -> MacoParam:
    """MaCo (Fel et al. 2023; lessons 08 and 09): optimize the Fourier phase, keep the magnitude natural.

    ``spectrum``: the fixed magnitude ``(3, H, W//2+1)``; default ``dataset.natural_spectrum(size)``, the
    average spectrum of the 1000 course photos (square sizes; computed once, offline, and cached).
    The phase starts uniform in [-π, π) (drawn from ``generator``). After ``optimize``,
    ``param.transparency`` is MaCo's attribution of the result.

    >>> p = maco(224, device=model.device)
    >>> res = optimize(model, obj.class_logit("goldfish"), p, transforms=T.standard(), steps=256)
    >>> res.image, p.transparency
    """
    h, w = _size(size)
    n = _batch(batch)
    if spectrum is None:
        if h != w:
            raise ValueError(f"maco's default spectrum is computed from the course photos at a square size; "
                             f"got {h}x{w}: pass spectrum= (3, {h}, {w // 2 + 1}) for a non-square image")
        from .dataset import natural_spectrum

        spectrum = natural_spectrum(h)
    if not isinstance(spectrum, torch.Tensor) or tuple(spectrum.shape) != (3, h, w // 2 + 1):
        got = tuple(spectrum.shape) if isinstance(spectrum, torch.Tensor) else type(spectrum).__name__
        raise ValueError(f"spectrum must be a tensor of shape (3, {h}, {w // 2 + 1}) for a {h}x{w} image, got {got}")
    if not torch.isfinite(spectrum).all() or (spectrum < 0).any():
        raise ValueError("spectrum must be a magnitude: finite and >= 0 everywhere")
    g = _generator(generator)
    phase = (torch.rand(n, 3, h, w // 2 + 1, generator=g) * 2 - 1) * np.pi
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return MacoParam(phase.to(dev), spectrum.float(), h, w)
