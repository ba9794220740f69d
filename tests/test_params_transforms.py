"""Parameterizations and transforms against numpy / torchvision, on non-square images."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from cnnviz_helpers import params as P
from cnnviz_helpers import transforms as T


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- params

def test_pixels_inits():
    assert torch.equal(P.pixels((32, 40))(), torch.full((1, 3, 32, 40), 0.5))
    assert torch.equal(P.pixels((32, 40), init="zeros", batch=2)(), torch.zeros(2, 3, 32, 40))
    assert torch.equal(P.pixels(16, init=0.25)(), torch.full((1, 3, 16, 16), 0.25))
    a, b, c = (P.pixels((32, 40), init="noise", generator=gen(s)).image() for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0 and float(a.max()) <= 1 and 0.05 < float(a.std()) < 0.15


def test_pixels_errors():
    with pytest.raises(ValueError, match=r"unknown init 'grey': choose one of noise, zeros, gray, or a number in \[0,1\]"):
        P.pixels(32, init="grey")
    with pytest.raises(ValueError, match=r"init must be one of noise, zeros, gray or a number in \[0,1\], got 2"):
        P.pixels(32, init=2)
    with pytest.raises(ValueError, match=r"image size 4x40 is too small"):
        P.pixels((4, 40))
    with pytest.raises(ValueError, match=r"batch must be a positive integer, got 0"):
        P.pixels(32, batch=0)


def test_pixel_constrain_and_from_image_copy():
    x = torch.rand(1, 3, 32, 40, generator=gen())
    p = P.from_image(x)
    with torch.no_grad():
        p.x += 2.0
    p.constrain_()
    assert float(p.image().max()) == 1.0
    assert float(x.max()) < 1.0, "from_image must copy, not alias"
    with pytest.raises(ValueError, match=r"from_image needs an image in \[0,1\], got values in \[-1, 0.5\]"):
        P.from_image(torch.tensor([-1.0, 0.5]).repeat(1, 3, 8, 4).view(1, 3, 8, 8))


def test_spectrum_scale_by_hand():
    s = P.spectrum_scale(32, 40)
    assert s.shape == (32, 21)
    assert float(s[0, 0]) == pytest.approx(40.0)            # f = 0 -> 1/(1/max(H,W))
    assert float(s[0, 1]) == pytest.approx(40.0)            # f = 1/40 cycles per pixel
    assert float(s[1, 0]) == pytest.approx(32.0)            # f = 1/32
    assert float(s[3, 4]) == pytest.approx(1 / np.hypot(3 / 32, 4 / 40))
    assert float(s[31, 0]) == pytest.approx(32.0)           # negative frequency -1/32
    assert torch.equal(P.spectrum_scale(32, 40, 0), torch.ones(32, 21))


@pytest.mark.parametrize("decorrelate", [False, True])
def test_fft_image_against_numpy(decorrelate):
    p = P.fft((32, 40), batch=2, sd=0.5, decorrelate=decorrelate, generator=gen(3))
    img = p()
    assert img.shape == (2, 3, 32, 40)
    spec = p.spectrum.detach().numpy().astype(np.float64)
    z = (spec[..., 0] + 1j * spec[..., 1]) * P.spectrum_scale(32, 40).numpy()
    t = np.fft.irfft2(z, s=(32, 40), axes=(-2, -1), norm="ortho") / 4.0
    if decorrelate:
        svd = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
        C = svd / np.linalg.norm(svd, axis=0).max()
        t = np.einsum("ck,nkhw->nchw", C, t)
    want = 1 / (1 + np.exp(-t))
    assert np.allclose(img.detach().numpy(), want, atol=1e-5)
    assert p.parameters()[0].requires_grad


def test_fft_reproducible_and_differentiable():
    a, b = P.fft(24, generator=gen(7)), P.fft(24, generator=gen(7))
    assert torch.equal(a(), b())
    g, = torch.autograd.grad(a()[0, 0, 3, 5], a.parameters())
    assert g.abs().sum() > 0
    with pytest.raises(ValueError, match=r"decay_power must be a number >= 0, got -1"):
        P.fft(24, decay_power=-1)
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator, got int"):
        P.fft(24, generator=3)


def _photo_like(n, h, w, seed=0):
    """Smooth random colours (low frequencies, like a photo) pushed past [0,1] and clipped: saturated patches."""
    g = gen(seed)
    low = torch.nn.functional.interpolate(torch.randn(n, 3, 6, 6, generator=g), size=(h, w), mode="bicubic",
                                          align_corners=False)
    return (0.5 + 0.45 * low + 0.03 * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1)


def _numpy_render(spec, h, w, decorrelate, decay_power=1.0):
    """FFTParam's image from its spectrum, in numpy float64 (independent of FFTParam.__call__)."""
    s = spec.detach().cpu().numpy().astype(np.float64)
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    scale = 1 / np.maximum(np.hypot(fy, fx), 1 / max(h, w)) ** decay_power
    t = np.fft.irfft2((s[..., 0] + 1j * s[..., 1]) * scale, s=(h, w), axes=(-2, -1), norm="ortho") / 4.0
    if decorrelate:
        svd = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
        t = np.einsum("ck,nkhw->nchw", svd / np.linalg.norm(svd, axis=0).max(), t)
    return 1 / (1 + np.exp(-t))


@pytest.mark.parametrize("decorrelate", [True, False])
@pytest.mark.parametrize("kind", ["random", "photo-like"])
@pytest.mark.parametrize("hw", [(32, 40), (33, 47), (64, 64), (31, 31)])
def test_fft_from_image_reproduces_the_photo(decorrelate, kind, hw):
    h, w = hw
    x = torch.rand(2, 3, h, w, generator=gen(1)) if kind == "random" else _photo_like(2, h, w)
    if kind == "photo-like":
        assert float((x == 0).float().mean()) > 0.01 and float((x == 1).float().mean()) > 0.01   # saturated pixels
    before = x.clone()
    p = P.fft_from_image(x, decorrelate=decorrelate)
    assert torch.equal(x, before)                                    # x is not modified
    assert p.shape == (2, 3, h, w) and p.spectrum.shape == (2, 3, h, w // 2 + 1, 2)
    img = p()
    assert (img - x).abs().max() <= 1e-4 + 1e-6                      # up to the clamp into [1e-4, 1 - 1e-4]
    assert (img - x.clamp(1e-4, 1 - 1e-4)).abs().max() < 2e-6        # exact but for float32 rounding
    assert np.abs(_numpy_render(p.spectrum, h, w, decorrelate) - x.clamp(1e-4, 1 - 1e-4).numpy()).max() < 2e-6


@pytest.mark.parametrize("decay_power", [0.0, 1.5])
def test_fft_from_image_other_decay(decay_power):
    x = _photo_like(1, 24, 36, seed=2)
    p = P.fft_from_image(x, decay_power=decay_power)
    assert p.decay_power == decay_power and p.decorrelate
    assert (p() - x).abs().max() <= 1e-4 + 1e-6
    assert np.abs(_numpy_render(p.spectrum, 24, 36, True, decay_power) - x.clamp(1e-4, 1 - 1e-4).numpy()).max() < 2e-6


def test_fft_from_image_gradients_reach_the_spectrum():
    x = _photo_like(2, 32, 32)
    p = P.fft_from_image(x)
    assert p.parameters() == [p.spectrum] and p.spectrum.requires_grad and p.spectrum.is_leaf
    g, = torch.autograd.grad(p()[1, 0, 10, 12], p.parameters())
    assert g[1].abs().sum() > 0 and g[0].abs().sum() == 0            # image 1's pixel depends on image 1's spectrum only
    before = p.image()                                               # a step on the spectrum changes the image
    with torch.no_grad():
        p.spectrum[0, :, 0, 1] += 0.01
    assert not torch.allclose(p.image(), before)


def test_fft_from_image_errors():
    with pytest.raises(ValueError, match=r"needs an image in \[0,1\], got values in \[0, 255\]"):
        P.fft_from_image(torch.linspace(0, 255, 3 * 16 * 16).reshape(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"needs an image in \[0,1\], got values in \[-0.5"):
        P.fft_from_image(torch.full((1, 3, 16, 16), -0.5))
    with pytest.raises(ValueError, match=r"NaN or infinite"):
        P.fft_from_image(torch.full((1, 3, 16, 16), float("nan")))
    with pytest.raises(ValueError, match=r"shape"):
        P.fft_from_image(torch.rand(1, 4, 16, 16))
    with pytest.raises(TypeError):
        P.fft_from_image(np.zeros((1, 3, 16, 16)))
    with pytest.raises(ValueError, match=r"decay_power must be a number >= 0, got -1"):
        P.fft_from_image(torch.rand(1, 3, 16, 16), decay_power=-1)
    with pytest.raises(TypeError, match=r"decorrelate must be True or False, got 1"):
        P.fft_from_image(torch.rand(1, 3, 16, 16), decorrelate=1)
    assert P.fft_from_image(torch.rand(3, 16, 16)).shape == (1, 3, 16, 16)   # a (3,H,W) image is one image


# ---------------------------------------------------------------- transforms

def test_jitter_crop_draws_from_the_generator():
    x = torch.arange(2 * 3 * 32 * 40, dtype=torch.float32).view(2, 3, 32, 40)
    g1, g2 = gen(5), gen(5)
    y = T.jitter(6)(x, g1)
    dy, dx = (int(torch.randint(7, (1,), generator=g2)) for _ in range(2))
    assert y.shape == (2, 3, 26, 34)
    assert torch.equal(y, x[..., dy:dy + 26, dx:dx + 34])
    assert torch.equal(T.jitter(6)(x, gen(5)), y)


def test_jitter_roll():
    x = torch.rand(1, 3, 32, 40, generator=gen())
    g2 = gen(9)
    dy, dx = (int(torch.randint(9, (1,), generator=g2)) - 4 for _ in range(2))
    assert torch.equal(T.jitter(4, mode="roll")(x, gen(9)), torch.roll(x, (dy, dx), (2, 3)))
    with pytest.raises(ValueError, match=r"unknown jitter mode 'wrap': choose one of crop, roll"):
        T.jitter(4, mode="wrap")
    with pytest.raises(ValueError, match=r"jitter\(40\) cannot crop a 32x40 image"):
        T.jitter(40)(x, gen())


def test_pad():
    x = torch.rand(1, 3, 8, 10, generator=gen())
    y = T.pad(2, value=0.25)(x, gen())
    assert y.shape == (1, 3, 12, 14) and float(y[0, 0, 0, 0]) == 0.25 and torch.equal(y[..., 2:-2, 2:-2], x)
    assert torch.equal(T.pad(1, mode="reflect")(x, gen())[..., 0, 1:-1], x[..., 1, :])
    with pytest.raises(ValueError, match=r"unknown pad mode 'circular': choose one of constant, reflect, replicate"):
        T.pad(2, mode="circular")


@pytest.mark.parametrize("degrees", [90, 17, -30])
def test_rotate_equals_torchvision(degrees):
    x = torch.rand(1, 3, 32, 40, generator=gen(1))
    want = TF.rotate(x, degrees, interpolation=InterpolationMode.BILINEAR)
    assert torch.allclose(T.rotate(x, degrees), want, atol=1e-5)


def test_random_scale_and_rotate_choose_from_the_list():
    x = torch.rand(1, 3, 32, 40, generator=gen(1))
    sizes = {tuple(T.random_scale([0.5, 1.5])(x, gen(s)).shape[-2:]) for s in range(20)}
    assert sizes == {(16, 20), (48, 60)}
    outs = [T.random_rotate([0, 90])(x, gen(s)) for s in range(10)]
    assert any(torch.equal(o, x) for o in outs)
    assert any(torch.allclose(o, TF.rotate(x, 90, interpolation=InterpolationMode.BILINEAR), atol=1e-5) for o in outs)
    with pytest.raises(ValueError, match=r"random_scale's scales is empty"):
        T.random_scale([])
    with pytest.raises(ValueError, match=r"scales must be positive, got \[1.0, 0.0\]"):
        T.random_scale([1, 0])


def test_compose_order_repr_and_generator():
    x = torch.rand(1, 3, 32, 40, generator=gen(1))
    t = T.compose(T.pad(4), T.jitter(4))
    manual = T.jitter(4)(T.pad(4)(x, gen(2)), gen(2))
    assert torch.equal(t(x, gen(2)), manual)
    assert repr(t) == "compose(pad(4, mode='constant'), jitter(4))"
    s = T.standard()
    a, b = s(x, gen(3)), s(x, gen(3))
    assert torch.equal(a, b)
    with pytest.raises(TypeError, match=r"jitter\(4\) needs an explicit torch.Generator"):
        T.jitter(4)(x, None)
    with pytest.raises(TypeError, match=r"compose takes transforms .* got int 3"):
        T.compose(T.pad(1), 3)
