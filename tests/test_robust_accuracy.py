"""``attacks.robust_accuracy`` (issue 15): the robust-accuracy curve in one call, checked against the
closed form of a linear two-class model, where the worst L-inf perturbation of radius eps lowers the
logit margin by exactly eps * ||w_y - w_other||_1 (both FGSM and PGD reach that corner)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnviz_helpers.attacks import robust_accuracy


def _linear(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)).eval()
    x = 0.3 + 0.4 * torch.rand(40, 3, 8, 8)  # inside [0.3, 0.7]: radii up to 0.1 are never clipped by [0, 1]
    with torch.no_grad():
        y = model(x).argmax(-1)
    y[:5] = 1 - y[:5]  # five images the model gets wrong before any attack
    return model, x, y


def _closed_form(model, x, y, eps):
    lin = model[1]
    w, b = lin.weight.detach(), lin.bias.detach()
    other = 1 - y
    dw = w[y] - w[other]                                   # (N, D)
    margin = (dw * x.flatten(1)).sum(1) + b[y] - b[other]
    return torch.stack([margin - e * dw.abs().sum(1) > 0 for e in eps])


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_robust_accuracy_is_the_closed_form_on_a_linear_model(attack):
    model, x, y = _linear()
    eps = [0.002, 0.01, 0.03, 0.1]
    r = robust_accuracy(model, x, y, eps=eps, attack=attack, batch_size=16, progress=False)
    want = _closed_form(model, x, y, eps)
    assert torch.equal(r.correct, want), (r.correct.sum(1), want.sum(1))
    assert torch.equal(r.clean, _closed_form(model, x, y, [0.0])[0])
    assert r.clean_accuracy == pytest.approx(35 / 40)
    assert r.accuracy == [float(c.float().mean()) for c in want]
    assert r.accuracy == sorted(r.accuracy, reverse=True) and r.accuracy[0] <= r.clean_accuracy
    assert r.success[-1] >= r.success[0] and 0 <= min(r.success) and max(r.success) <= 1
    assert r.eps == tuple(eps) and r.attack == attack and r.steps == (1 if attack == "fgsm" else 10)


def test_batches_do_not_change_the_result():
    model, x, y = _linear(1)
    a = robust_accuracy(model, x, y, eps=[0.01, 0.05], batch_size=7, progress=False)
    b = robust_accuracy(model, x, y, eps=[0.01, 0.05], batch_size=40, progress=False)
    assert torch.equal(a.correct, b.correct)


@pytest.mark.parametrize("kwargs, match", [
    ({"attack": "cw"}, r"unknown attack 'cw': choose one of fgsm, pgd"),
    ({"eps": []}, "non-empty list"),
    ({"eps": 0.1}, "non-empty list"),
    ({"eps": [0.01, 2.0]}, r"eps\[1\]"),
    ({"steps": 0}, "steps"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_arguments_are_refused_before_any_work(kwargs, match):
    model, x, y = _linear()
    args = {"eps": [0.01], **kwargs}
    with pytest.raises(ValueError, match=match):
        robust_accuracy(model, x, y, progress=False, **args)


def test_one_label_per_image():
    model, x, y = _linear()
    with pytest.raises(ValueError, match="40 images and 39 labels"):
        robust_accuracy(model, x, y[:-1], eps=[0.01], progress=False)
