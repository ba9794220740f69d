"""What lesson 12 (fooling) relies on, checked against independent computations.

- ``fgsm`` and ``pgd`` equal captum's reference implementations (``captum.robust``)
  on the tiny CNN, untargeted and targeted, on non-square images;
- one gradient serves the whole epsilon sweep of the lesson: ``fgsm`` at any eps is
  ``clip(x + eps * sign(grad))`` with the same gradient;
- Goodfellow's linear explanation in closed form: on a linear model the targeted
  FGSM step raises the logit margin by exactly ``eps * ||w_t - w_o||_1 / std``;
- the lesson's first-order prediction (exercise 1) matches finite differences;
- fooling images from noise: ascending ``log_prob`` with the normalized step raises
  every target's probability, checked with a softmax computed by hand;
- the attacks leave the model as found.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnviz_helpers import objectives as O
from cnnviz_helpers import params as P
from cnnviz_helpers.models import CourseModel
from cnnviz_helpers.optimize import fgsm, optimize, pgd
from support import assert_untouched, tiny_input, tiny_model

captum_robust = pytest.importorskip("captum.robust")
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


def _ce_none(out, target):
    return F.cross_entropy(out, target, reduction="none")


def _double_tiny(seed: int = 0):
    m = tiny_model(seed).double()
    return m


def test_fgsm_equals_captum_untargeted_and_targeted():
    m = _double_tiny()
    x = tiny_input(n=3, size=(32, 40)).double()
    labels = torch.tensor([0, 3, 4])
    ref = captum_robust.FGSM(m, loss_func=_ce_none, lower_bound=0.0, upper_bound=1.0)
    ref.zero_thresh = 0.0                     # captum skips |grad| <= 1e-6; sign(0) = 0 on both sides
    for eps in (0.5 / 255, 2 / 255, 8 / 255):
        ours = fgsm(m, x, eps=eps, label=labels.tolist())
        theirs = ref.perturb(x.clone(), epsilon=eps, target=labels)
        assert torch.allclose(ours, theirs, atol=1e-12), eps
        ours_t = fgsm(m, x, eps=eps, target=labels.tolist())
        theirs_t = ref.perturb(x.clone(), epsilon=eps, target=labels, targeted=True)
        assert torch.allclose(ours_t, theirs_t, atol=1e-12), eps


@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_equals_captum(targeted):
    m = _double_tiny(1)
    x = tiny_input(seed=4, n=2, size=(32, 40)).double()
    cls = torch.tensor([2, 1])
    eps, alpha, steps = 4 / 255, 1 / 255, 7
    ref = captum_robust.PGD(m, loss_func=_ce_none, lower_bound=0.0, upper_bound=1.0)
    ref.fgsm.zero_thresh = 0.0
    theirs = ref.perturb(x.clone(), radius=eps, step_size=alpha, step_num=steps, target=cls, targeted=targeted)
    kw = {"target": cls.tolist()} if targeted else {"label": cls.tolist()}
    ours = pgd(m, x, eps=eps, steps=steps, alpha=alpha, **kw)
    assert torch.allclose(ours, theirs, atol=1e-12)
    assert float((ours - x).abs().max()) <= eps + 1e-12
    assert float(ours.min()) >= 0 and float(ours.max()) <= 1


def test_one_gradient_gives_the_whole_epsilon_sweep():
    """The lesson computes sign(grad) once and sweeps eps; fgsm recomputes it: they must agree."""
    m, x = tiny_model(2), tiny_input(seed=5, n=4, size=(32, 40))
    y = torch.tensor([0, 1, 2, 3])
    xg = x.clone().requires_grad_(True)
    g, = torch.autograd.grad(F.cross_entropy(m(xg), y, reduction="sum"), xg)
    for e in (0.25, 1, 2, 8):
        eps = e / 255
        assert torch.allclose(fgsm(m, x, eps=eps, label=y.tolist()), (x + eps * g.sign()).clamp(0, 1), atol=1e-7)


class _Linear(nn.Module):
    def __init__(self, w: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.fc = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(w)
            self.fc.bias.copy_(b)

    def forward(self, z):
        return self.fc(z.flatten(1))


def test_targeted_fgsm_on_a_linear_model_is_goodfellows_closed_form():
    """Two classes, logits W (x - mean)/std + b: the targeted step is eps*sign(w_t - w_o) and raises the
    margin S_t - S_o by exactly eps * ||w_t - w_o||_1 / std (no pixel clipped)."""
    h, w = 8, 12
    g = torch.Generator().manual_seed(0)
    W = torch.randn(2, 3 * h * w, generator=g, dtype=torch.float64)
    b = torch.randn(2, generator=g, dtype=torch.float64)
    std = 0.25
    m = CourseModel("linear", _Linear(W, b), mean=(0.5, 0.5, 0.5), std=(std, std, std), input_size=h,
                    resize_size=h, categories=["a", "b"], aliases={}, penultimate="net.fc", classifier="net.fc",
                    pretrained=False).double().eval()
    x = (0.2 + 0.6 * torch.rand(1, 3, h, w, generator=g, dtype=torch.float64))   # away from 0 and 1
    eps = 3 / 255
    adv = fgsm(m, x, eps=eps, target=0)
    d = W[0] - W[1]
    assert torch.equal((adv - x).flatten().sign(), d.sign())          # the step is sign(w_t - w_o)
    with torch.no_grad():
        gain = float(m(adv)[0, 0] - m(adv)[0, 1]) - float(m(x)[0, 0] - m(x)[0, 1])
    assert gain == pytest.approx(eps * float(d.abs().sum()) / std, rel=1e-9)


def test_first_order_prediction_matches_finite_differences():
    """Exercise 1 of the lesson: J(x + t s) - J(x) ~ t ||grad J||_1 along s = sign(grad J), for small t."""
    m = _double_tiny(3)
    x = (0.1 + 0.8 * tiny_input(seed=6, size=(32, 40))).double()
    y = torch.tensor([2])
    xg = x.clone().requires_grad_(True)
    g, = torch.autograd.grad(F.cross_entropy(m(xg), y), xg)
    s = g.sign()
    with torch.no_grad():
        J = lambda t: float(F.cross_entropy(m(x + t * s), y))
        h = 1e-6
        slope = (J(h) - J(-h)) / (2 * h)
    assert slope == pytest.approx(float(g.abs().sum()), rel=1e-5)


def test_fooling_from_noise_raises_every_target_probability():
    m = tiny_model(0)
    classes = [0, 1, 2, 3, 4]
    p = P.pixels((32, 40), batch=5, init="noise", generator=torch.Generator().manual_seed(0))
    x0 = p.image()
    res = optimize(m, O.log_prob(classes), p, steps=60, lr=0.01, optimizer="normalized", progress=False)
    with torch.no_grad():
        z0, z1 = m(x0).double(), m(res.image).double()
    idx = torch.tensor(classes)[:, None]
    soft = lambda z: (z.gather(1, idx)[:, 0] - torch.logsumexp(z, 1)).exp()   # softmax by hand
    p0, p1 = soft(z0), soft(z1)
    assert bool((p1 > p0).all()), (p0, p1)
    assert float(p1.mean()) > 2 * float(p0.mean())
    assert float(res.image.min()) >= 0 and float(res.image.max()) <= 1


def test_attacks_leave_the_model_untouched():
    m, x = tiny_model(train_mode=True, with_grads=True), tiny_input()
    assert_untouched(m, lambda m: fgsm(m, x, eps=2 / 255, label=1))
    assert_untouched(m, lambda m: pgd(m, x, eps=4 / 255, steps=3, target=2, until=0.99))
    assert_untouched(m, lambda m: pgd(m, x, eps=math.inf, steps=3, target=2), raises=ValueError)


# ---- Szegedy et al.'s penalized attack (lesson 12, issue 14) ----

def _tiny_linear(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5)).eval()
    x = 0.2 + 0.6 * torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return net, x


def test_penalized_attack_first_step_is_adams_sign_step():
    from cnnviz_helpers.attacks import penalized_attack
    net, x = _tiny_linear()
    target = [1, 2, 3, 4]
    xr = x.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(net(xr), torch.tensor(target), reduction="sum")
    g, = torch.autograd.grad(loss, xr)
    # at r = 0 the penalty's (sub)gradient is 0 and Adam's first step is lr * g / (|g| + 1e-8): a sign step
    want = (x - 0.01 * g / (g.abs() + 1e-8)).clamp(0, 1)
    got = penalized_attack(net, x, target, c=1.0, steps=1, lr=0.01)
    assert torch.allclose(got, want, atol=1e-6)


def test_penalized_attack_trades_size_for_success():
    from cnnviz_helpers.attacks import penalized_attack
    net, x = _tiny_linear(1)
    target = 3
    sizes, probs = [], []
    for c in [0.0, 1.0, 30.0]:
        xa = penalized_attack(net, x, target, c=c, steps=60, lr=0.01)
        assert xa.shape == x.shape and float(xa.min()) >= 0 and float(xa.max()) <= 1
        sizes.append(float((xa - x).flatten(1).norm(dim=1).mean()))
        with torch.no_grad():
            probs.append(float(net(xa).softmax(-1)[:, target].mean()))
    assert sizes[0] > sizes[1] > sizes[2]          # a larger c keeps the change smaller ...
    assert probs[0] > probs[2]                     # ... and reaches the target less
    with torch.no_grad():
        assert (net(penalized_attack(net, x, target, c=0.0, steps=60, lr=0.01)).argmax(-1) == target).all()
    # one target per image, and a batch gives what one call per image gives
    one = penalized_attack(net, x[1:2], target, c=1.0, steps=20, lr=0.01)
    assert torch.allclose(penalized_attack(net, x, [target] * 4, c=1.0, steps=20, lr=0.01)[1:2], one, atol=1e-5)
    with pytest.raises(ValueError, match="targets"):
        penalized_attack(net, x, [1, 2], c=1.0)
    with pytest.raises(ValueError, match="c must"):
        penalized_attack(net, x, 1, c=-1.0)
