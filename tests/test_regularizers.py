"""Yosinski et al.'s regularizers as loop steps (``cnnviz_helpers.regularizers``, issue 14): each step's
closed form, and the loop's update ``x <- r(x + η g)`` checked by hand on a linear model with SGD."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnviz_helpers import objectives as obj
from cnnviz_helpers import params
from cnnviz_helpers import regularizers as R
from cnnviz_helpers.optimize import optimize


def _x(seed=0, n=2, size=8):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_decay_pulls_towards_the_centre():
    x = _x()
    assert torch.allclose(R.decay(0.1).on_image(x, None, 0), 0.5 + 0.9 * (x - 0.5))
    c = (0.485, 0.456, 0.406)
    y = R.decay(0.2, center=c).on_image(x, None, 0)
    assert torch.allclose(y, torch.tensor(c).view(1, 3, 1, 1) + 0.8 * (x - torch.tensor(c).view(1, 3, 1, 1)))


def test_blur_every_k_steps_only():
    x = _x(size=16)
    r = R.blur_every(1.5, 3)
    assert torch.equal(r.on_image(x, None, 1), x) and torch.equal(r.on_image(x, None, 2), x)
    b = r.on_image(x, None, 3)
    assert not torch.equal(b, x) and float(b.var()) < float(x.var())
    assert torch.allclose(b.mean((2, 3)), x.mean((2, 3)), atol=0.02)   # a blur keeps the mean colour


def test_clip_norm_sets_the_faintest_pixels_to_the_centre():
    x = torch.full((1, 3, 2, 5), 0.5)
    for j in range(10):   # pixel j has colour norm proportional to j
        x[0, :, j // 5, j % 5] = 0.5 + 0.01 * j
    y = R.clip_norm(30).on_image(x, None, 0)
    changed = (y != x).any(1)[0].flatten().tolist()
    assert changed == [False, True, True] + [False] * 7   # pixels 0, 1, 2 are the lowest 30 % (pixel 0 already 0.5)
    assert torch.equal(y[0, :, 0, :3], torch.full((3, 3), 0.5))


def test_clip_contribution_uses_the_gradient():
    x = torch.full((1, 3, 1, 4), 0.5)
    x[0, 0] = torch.tensor([0.9, 0.9, 0.9, 0.9])
    g = torch.zeros_like(x)
    g[0, 0] = torch.tensor([1.0, 0.01, -2.0, 0.5])        # contributions 0.4, 0.004, 0.8, 0.2
    y = R.clip_contribution(50).on_image(x, g, 0)
    assert y[0, 0, 0].tolist() == pytest.approx([0.9, 0.5, 0.9, 0.5])


def test_clip_gradient_caps_the_norm_per_image():
    g = torch.zeros(2, 3, 2, 2)
    g[0, 0, 0, 0], g[1, 0, 0, 0] = 10.0, 0.5
    c = R.clip_gradient(2.0).on_gradient(g, 0)
    assert float(c[0].norm()) == pytest.approx(2.0) and torch.equal(c[1], g[1])


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_the_loop_applies_them_around_each_update():
    model = Linear().eval()
    w = model.fc.weight.detach()[1].view(1, 3, 8, 8)
    p = params.pixels(8, init=0.5)
    optimize(model, obj.class_logit(1), p, steps=1, lr=0.01, optimizer="sgd",
             regularize=[R.clip_gradient(0.5), R.decay(0.1)], progress=False)
    step = 0.01 * w * min(1.0, 0.5 / float(w.norm()))
    want = (0.5 + 0.9 * step).clamp(0, 1)                  # decay after the (clipped) step, then [0,1]
    assert torch.allclose(p.x.detach(), want, atol=1e-6)


def test_bad_regularizers_are_refused():
    model = Linear().eval()
    with pytest.raises(TypeError, match="regularize takes steps"):
        optimize(model, obj.class_logit(1), params.pixels(8), steps=1, regularize=[lambda x: x], progress=False)
    with pytest.raises(TypeError, match="works on pixels"):
        optimize(model, obj.class_logit(1), params.fft(8), steps=1, regularize=[R.decay(0.1)], progress=False)
    with pytest.raises(ValueError, match="percentage"):
        R.clip_norm(150)
    with pytest.raises(ValueError, match="center"):
        R.decay(0.1, center=(0.5, 0.5))
