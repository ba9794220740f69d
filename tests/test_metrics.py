"""The report card's metrics (``attribution.metrics``, issue 15) and integrated gradients, each against an
independent computation: captum's IntegratedGradients, the double-sum Gini coefficient, scipy's Spearman
correlation, and closed forms on linear models."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from cnnviz_helpers import attribution as A


class Linear(nn.Module):
    def __init__(self, bias=True, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(3 * 12 * 12, 5, bias=bias)
        self.categories = [f"class{i}" for i in range(5)]

    def forward(self, x):
        return self.fc(x.flatten(1))


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Softplus(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                 nn.Linear(24, 5))

    def forward(self, x):
        return self.net(x)


def _x(n=2, seed=0):
    return torch.rand(n, 3, 12, 12, generator=torch.Generator().manual_seed(seed)) * 0.8


def test_gini_is_the_classical_double_sum_coefficient():
    rng = np.random.default_rng(0)
    for _ in range(5):
        v = rng.random(50) * (rng.random(50) < 0.4)
        want = np.abs(v[:, None] - v[None, :]).sum() / (2 * len(v) * v.sum())
        assert float(A.gini(torch.tensor(v)[None])[0]) == pytest.approx(want, abs=1e-6)
    assert float(A.gini(torch.ones(1, 10))[0]) == pytest.approx(0, abs=1e-7)
    one = torch.zeros(1, 10)
    one[0, 3] = -2.0
    assert float(A.gini(one)[0]) == pytest.approx(0.9)
    assert float(A.gini(torch.zeros(1, 4))[0]) == 0


def test_integrated_gradients_equals_captum_and_is_complete():
    from captum.attr import IntegratedGradients

    model, x = Small().eval(), _x()
    ours = A.integrated_gradients(model, x, [1, 3], steps=20, batch_size=7)
    ref = IntegratedGradients(model).attribute(x, target=[1, 3], n_steps=20, baselines=0.0)
    assert torch.allclose(ours, ref, atol=1e-6)
    gap = A.completeness_gap(model, x, [1, 3], ours)
    assert float(gap.max()) < 1e-3
    gxi = A.input_x_gradient(model, x, [1, 3])
    assert float(A.completeness_gap(model, x, [1, 3], gxi).min()) > 1e-3   # not complete on a nonlinear model


def test_gradient_x_input_is_complete_on_a_linear_model_without_bias():
    model, x = Linear(bias=False), _x()
    gap = A.completeness_gap(model, x, [0, 2], A.input_x_gradient(model, x, [0, 2]))
    assert float(gap.max()) < 1e-5


def test_max_sensitivity_closed_forms():
    model, x = Linear(), _x()
    assert float(A.max_sensitivity(A.gradient, model, x, 1).max()) == 0   # a linear model's gradient is constant
    g = torch.Generator().manual_seed(3)
    got = A.max_sensitivity(A.input_x_gradient, model, x, 1, radius=0.05, samples=4, generator=g)
    g = torch.Generator().manual_seed(3)
    w = model.fc.weight.detach()[1].view(1, 3, 12, 12)
    want = torch.zeros(2)
    for _ in range(4):
        d = (torch.rand(x.shape, generator=g) * 2 - 1) * 0.05
        xd = (x + d).clamp(0, 1)
        want = torch.maximum(want, (w * (xd - x)).flatten(1).norm(dim=1) / (w * x).flatten(1).norm(dim=1))
    assert torch.allclose(got, want, rtol=1e-5)


def test_random_logit_is_spearman_of_the_two_class_maps():
    model, x = Linear(), _x()
    corr, other = A.random_logit(A.saliency, model, x, [0, 4], generator=torch.Generator().manual_seed(5))
    assert all(o != c for o, c in zip(other.tolist(), [0, 4]))
    w = model.fc.weight.detach().abs().view(5, 3, 12, 12).amax(1)   # saliency: max over colour of |w_c|
    for i, (c, o) in enumerate(zip([0, 4], other.tolist())):
        assert float(corr[i]) == pytest.approx(spearmanr(w[c].flatten(), w[o].flatten())[0], abs=1e-6)


def test_input_invariance_gradient_yes_gradient_x_input_no():
    model, x = Small().eval(), _x()
    c = 0.15
    assert torch.allclose(A.Shifted(model, c)(x + c), model(x), atol=1e-6)
    assert float(A.input_invariance(A.gradient, model, x, 2, shift=c).max()) < 1e-5
    grad = A.gradient(model, x, 2)
    want = (c * grad).flatten(1).norm(dim=1) / (x * grad).flatten(1).norm(dim=1)
    assert torch.allclose(A.input_invariance(A.input_x_gradient, model, x, 2, shift=c), want, rtol=1e-4)
    with pytest.raises(ValueError, match="leaves"):
        A.input_invariance(A.gradient, model, x + 0.15, 2, shift=0.15)


def test_paste_and_the_pointing_game():
    obj, bg = torch.ones(3, 40, 40), torch.zeros(3, 100, 100)
    comp, box = A.paste(obj, bg, top=10, left=50, size=20)
    assert box == (10, 50, 30, 70) and float(comp[:, 10:30, 50:70].min()) == 1 and float(comp.sum()) == 3 * 400
    maps = torch.zeros(4, 100, 100)
    maps[0, 20, 60] = 1      # inside
    maps[1, 40, 60] = 1      # 11 rows below the box (last row 29): within 15
    maps[2, 50, 60] = 1      # 21 rows below: a miss
    maps[3, 40, 81] = 1      # 11 down, 12 right: sqrt(265) > 15, a miss
    assert A.pointing_game(maps, [box] * 4).tolist() == [True, True, False, False]
    assert A.pointing_game(maps, [box] * 4, tolerance=0).tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="does not fit"):
        A.paste(obj, bg, top=90, left=0, size=20)
    with pytest.raises(ValueError, match="N boxes"):
        A.pointing_game(maps, [box])
