"""MaCo (issue 15): ``params.maco`` optimizes only the Fourier phase, keeps the magnitude at the natural
spectrum of the course photos (``dataset.natural_spectrum``), and accumulates the transparency map.
Checked in closed form: the rendered signal's magnitude is the fixed spectrum up to one scale; on a
linear score the transparency after k steps is k·|w|; the photos' spectrum falls off as 1/f."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cnnviz_helpers import objectives as obj
from cnnviz_helpers.data import sample_names
from cnnviz_helpers import params
from cnnviz_helpers.dataset import magnitude_spectrum, natural_spectrum
from cnnviz_helpers.dataset.spectrum import spectrum_distance
from cnnviz_helpers.optimize import optimize

SHARED = Path(os.environ.get("CNNVIZ_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _spectrum(h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(3, h, w // 2 + 1, generator=g) + 0.1
    s[:, 0, 0] = 0  # no DC, as the photos' spectrum (each photo's mean is removed)
    return s


def test_the_magnitude_is_the_fixed_spectrum_up_to_one_scale():
    spec = _spectrum()
    p = params.maco(32, batch=2, spectrum=spec, generator=torch.Generator().manual_seed(1))
    t = p.signal()
    assert torch.allclose(t.mean((1, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(t.std(dim=(1, 2, 3)), torch.ones(2), atol=1e-4)
    mag = torch.fft.rfft2(t, norm="ortho").abs()
    # columns 0 and W/2 hold Hermitian pairs inside one rfft column: a random phase there is not a real
    # image's, so irfft keeps only part of it. Everywhere else the magnitude is c * spectrum exactly.
    inner = (slice(None), slice(None), slice(1, -1))
    ratio = mag[(slice(None),) + inner] / spec[inner]
    for n in range(2):
        assert torch.allclose(ratio[n], ratio[n].mean(), rtol=1e-3), float(ratio[n].std() / ratio[n].mean())
    x = p().detach()
    assert x.shape == (2, 3, 32, 32) and 0 < float(x.min()) and float(x.max()) < 1
    assert p.parameters() == [p.phase] and p.phase.shape == (2, 3, 32, 17)


def test_only_the_phase_moves_and_the_transparency_sums_the_image_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4)).eval()
    spec = _spectrum(16, 16)
    p = params.maco(16, spectrum=spec.clone())
    before = p.phase.detach().clone()
    res = optimize(model, obj.class_logit(2), p, steps=5, lr=0.05, progress=False)
    assert res.steps == 5 and not torch.equal(p.phase.detach(), before)
    assert torch.equal(p.magnitude, spec)
    w = model[1].weight.detach()[2].view(1, 3, 16, 16)   # d logit_2 / d image: the same at every step
    assert torch.allclose(p.transparency, 5 * w.abs(), rtol=1e-5, atol=1e-7)
    assert float(res.scores[-1, 0]) > float(res.scores[0, 0])


@pytest.mark.parametrize("kwargs, match", [
    ({"size": (16, 24)}, "square size"),
    ({"size": 16, "spectrum": torch.ones(3, 16, 16)}, r"shape \(3, 16, 9\)"),
    ({"size": 16, "spectrum": -torch.ones(3, 16, 9)}, "magnitude"),
    ({"size": 4, "spectrum": torch.ones(3, 4, 3)}, "too small"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        params.maco(**kwargs)


def test_magnitude_spectrum_is_the_mean_fft_magnitude():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 8, 8, generator=g)
    want = np.abs(np.fft.rfft2(x.numpy() - x.numpy().mean((-2, -1), keepdims=True), norm="ortho")).mean(0)
    assert np.allclose(magnitude_spectrum(x).numpy(), want, atol=1e-6)
    u8 = (x * 255).round().to(torch.uint8)
    assert torch.allclose(magnitude_spectrum(u8), magnitude_spectrum(u8.float() / 255))


def test_the_course_photos_spectrum_falls_off_as_one_over_f_and_is_cached(tmp_path, monkeypatch):
    if not all((SHARED / n).exists() for n in sample_names()):
        pytest.skip(f"the course image mirror is not at {SHARED}")
    monkeypatch.setenv("CNNVIZ_CACHE", str(tmp_path))
    s = natural_spectrum(64)
    assert s.shape == (3, 64, 33) and float(s[:, 0, 0].abs().max()) < 1e-4  # each photo's mean is removed
    fy = np.fft.fftfreq(64)[:, None]
    fx = np.fft.rfftfreq(64)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    m = s.mean(0).numpy()
    band = (f > 2 / 64) & (f < 0.25)
    slope = np.polyfit(np.log(f[band]), np.log(m[band]), 1)[0]
    assert -1.6 < slope < -0.6, f"amplitude spectrum slope {slope:.2f}: natural images fall off as about 1/f"

    from cnnviz_helpers.dataset import photos

    def no_decoding(*a, **k):
        raise AssertionError("natural_spectrum decoded the photos again instead of reading its cache")

    monkeypatch.setattr(photos.PhotoSet, "batches", no_decoding)
    assert torch.equal(natural_spectrum(64), s)


def _distance_numpy(x, ref):
    """numpy: per image, mean |centred log |rfft2(x - mean)| - centred log ref| over every bin but DC."""
    out = []
    for im in x:
        a = np.abs(np.fft.rfft2(im - im.mean(axis=(-2, -1), keepdims=True), norm="ortho"))
        la, lr = [], []
        for c in range(3):
            for i in range(a.shape[1]):
                for j in range(a.shape[2]):
                    if (i, j) != (0, 0):
                        la.append(np.log(a[c, i, j]))
                        lr.append(np.log(ref[c, i, j]))
        la, lr = np.array(la), np.array(lr)
        out.append(np.mean(np.abs((la - la.mean()) - (lr - lr.mean()))))
    return np.array(out)


def test_spectrum_distance_is_the_numpy_formula_and_ignores_contrast():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 3, 12, 10, generator=g)
    ref = magnitude_spectrum(torch.rand(5, 3, 12, 10, generator=g))            # (3, 12, 6)
    d = spectrum_distance(x, ref)
    assert d.shape == (3,)
    assert np.allclose(d.numpy(), _distance_numpy(x.numpy().astype(np.float64), ref.numpy().astype(np.float64)),
                       atol=1e-5)
    # one scale per image is removed: a lower contrast around the same mean is the same spectrum's shape
    assert torch.allclose(spectrum_distance(0.5 + 0.3 * (x - 0.5), ref), d, atol=1e-5)
    u8 = (x * 255).round().to(torch.uint8)
    assert torch.allclose(spectrum_distance(u8, ref), spectrum_distance(u8.float() / 255, ref), atol=1e-6)


def test_spectrum_distance_is_zero_for_the_reference_magnitude_with_any_phase():
    g = torch.Generator().manual_seed(4)
    ref = magnitude_spectrum(torch.rand(4, 3, 16, 16, generator=g))            # a real images' magnitude
    phase = torch.angle(torch.fft.rfft2(torch.rand(2, 3, 16, 16, generator=g).double()))   # a real image's phase
    y = torch.fft.irfft2(torch.polar(3.0 * ref.double().expand_as(phase), phase), s=(16, 16), norm="ortho")
    x = 0.5 + 0.1 * y                                                           # magnitude 0.3 · ref
    assert float(spectrum_distance(x, ref).max()) < 1e-5
    flat = 0.5 + 0.1 * torch.fft.irfft2(torch.polar(torch.ones_like(phase), phase), s=(16, 16), norm="ortho")
    assert float(spectrum_distance(flat, ref).min()) > 0.1                      # a white spectrum is not ref's


@pytest.mark.parametrize("images, reference, match", [
    (torch.rand(2, 1, 8, 8), torch.ones(3, 8, 5), r"images \(N, 3, H, W\)"),
    (torch.rand(2, 3, 8, 8), torch.ones(3, 8, 8), r"\(3, 8, 5\)"),
])
def test_spectrum_distance_bad_arguments(images, reference, match):
    with pytest.raises(ValueError, match=match):
        spectrum_distance(images, reference)
