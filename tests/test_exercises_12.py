"""Lesson 12's exercise checks: the official answers pass, typical mistakes get their hint, stubs are 'not done'.

A tiny, steep CNN on 16x16 images stands in for EfficientNet-Lite0 (the checks only call
``model(x)``), so that PGD fools it within 2/255 in a few steps.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnviz_helpers import exercises
from cnnviz_helpers.exercises import ExerciseError, lesson12
from cnnviz_helpers.optimize import pgd
from support import rejected


def tiny_cnn(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 16 * 16, 10))
    with torch.no_grad():
        net[0].weight.mul_(4); net[3].weight.mul_(40)
    return net.eval()


@pytest.fixture(scope="module")
def nets():
    return tiny_cnn(0), tiny_cnn(1)


@pytest.fixture(scope="module")
def photo():
    return torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1


def test_1_prediction(student_mode):
    assert lesson12.check_1("fgsm", eps=2, fgsm_accuracy=0.05, noise_accuracy=0.7).ok
    rejected(lesson12.check_1("noise", eps=2, fgsm_accuracy=0.05, noise_accuracy=0.7), "measured at 2/255")
    rejected(lesson12.check_1("FGSM!", eps=2, fgsm_accuracy=0.05, noise_accuracy=0.7), "'fgsm' or 'noise'")
    assert not lesson12.check_1(..., eps=2, fgsm_accuracy=0.05, noise_accuracy=0.7).done


def grad(model, x, y):
    xg = x.clone().requires_grad_(True)
    return torch.autograd.grad(F.cross_entropy(model(xg), y), xg)[0]


def test_2_linearity(student_mode, nets, photo):
    model, label, eps = nets[0], torch.tensor([3]), 0.1 / 255
    g = grad(model, photo, label)                                      # as the lesson: loss_gradient
    predicted = eps * float(g.abs().sum())
    with torch.no_grad():
        J = lambda x: float(F.cross_entropy(model(x), label))
        actual = J((photo + eps * g.sign()).clamp(0, 1)) - J(photo)
    ctx = dict(model=model, x=photo, label=label, eps=eps)
    assert lesson12.check_2(predicted, actual, **ctx).ok
    rejected(lesson12.check_2(float(g.abs().sum()), actual, **ctx), "multiply by eps")
    rejected(lesson12.check_2(eps * float(g.norm()), actual, **ctx), "L2 norm")
    with torch.no_grad():
        downhill = J((photo - eps * g.sign()).clamp(0, 1)) - J(photo)
        after = J((photo + eps * g.sign()).clamp(0, 1))
    rejected(lesson12.check_2(predicted, downhill, **ctx), "down the gradient")
    rejected(lesson12.check_2(predicted, after, **ctx), "its increase")
    rejected(lesson12.check_2(predicted, "0.1", **ctx), "one number")
    assert not lesson12.check_2(predicted, ..., **ctx).done


def test_3_small_budget(student_mode, nets, photo):
    model, eps = nets[0], 2 / 255
    target = int(model(photo).argsort(descending=True)[0, 1])          # the runner-up class
    adv = pgd(model, photo, eps=eps, steps=40, alpha=0.5 / 255, target=target, until=0.99)
    with torch.no_grad():
        p = float(model(adv).softmax(-1)[0, target])
    ctx = dict(model=model, x=photo, target=target, eps=eps)
    assert p > 0.5
    assert lesson12.check_3(adv, p, **ctx).ok
    big = pgd(model, photo, eps=4 / 255, steps=40, alpha=0.5 / 255, target=target, until=0.99)
    with torch.no_grad():
        p_big = float(model(big).softmax(-1)[0, target])
        logit = float(model(adv)[0, target])
    rejected(lesson12.check_3(big, p_big, **ctx), "over the budget", "EPS_TARGETED")
    rejected(lesson12.check_3(adv, logit, **ctx) if not 0 <= logit <= 1 else lesson12.check_3(adv, 7.0, **ctx),
          "not a probability")
    rejected(lesson12.check_3(adv[0], p, **ctx), "expected (1, 3, 16, 16)")
    rejected(lesson12.check_3(photo.clone(), p, **ctx), "equals the photo")
    assert not lesson12.check_3(..., ..., **ctx).done


def test_3_untrained_model_checks_the_formulas_not_the_success(student_mode, nets, photo):
    model, eps = nets[0], 2 / 255
    target = int(model(photo).argmin())                                 # the least likely class: one step is not enough
    weak = pgd(model, photo, eps=eps, steps=1, alpha=0.5 / 255, target=target)
    with torch.no_grad():
        p = float(model(weak).softmax(-1)[0, target])
    ctx = dict(model=model, x=photo, target=target, eps=eps)
    assert p <= 0.5
    rejected(lesson12.check_3(weak, p, **ctx), "only")                  # trained: the attack must succeed
    assert lesson12.check_3(weak, p, **ctx, trained=False).ok           # untrained: budget, image and p only
    rejected(lesson12.check_3(weak, 1.5, **ctx, trained=False), "not a probability")
    rejected(lesson12.check_3(photo.clone(), p, **ctx, trained=False), "equals the photo")


def test_4_transfer(student_mode, nets):
    maker, other = nets
    images = torch.rand(20, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        top_maker, top_other = maker(images).argmax(-1), other(images).argmax(-1)
    classes = torch.where(torch.arange(20) < 6, top_other, top_maker).tolist()   # 6 images the other agrees on
    fraction = float((top_other == torch.tensor(classes)).float().mean())
    by_maker = float((top_maker == torch.tensor(classes)).float().mean())
    assert 0 < fraction < 1 and by_maker != fraction
    ctx = dict(other=other, maker=maker, images=images, classes=classes)
    assert lesson12.check_4(fraction, **ctx).ok
    rejected(lesson12.check_4(by_maker, **ctx), "made for (`model`, Lite0)")
    rejected(lesson12.check_4(100 * fraction, **ctx), "percentage")
    rejected(lesson12.check_4(20 * fraction, **ctx), "a count")
    rejected(lesson12.check_4([fraction], **ctx), "one number")
    assert not lesson12.check_4(..., **ctx).done


def test_5_linear_change(student_mode):
    w = torch.randn(3 * 16 * 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    eps = 2 / 255
    right = float(w @ (eps * w.sign()))
    assert lesson12.check_5(right, w=w, eps=eps).ok
    assert lesson12.check_5(eps * w.numel() * float(w.abs().mean()), w=w, eps=eps).ok
    rejected(lesson12.check_5(float(w.abs().sum()), w=w, eps=eps), "multiply by eps")
    rejected(lesson12.check_5(eps * float(w.abs().mean()), w=w, eps=eps), "n inputs add up")
    rejected(lesson12.check_5(eps * float(w.sum()), w=w, eps=eps), "sum |w|")
    rejected(lesson12.check_5(255 * right, w=w, eps=eps), "[0, 1] scale")
    rejected(lesson12.check_5(right + 1, w=w, eps=eps), "is not it")
    assert not lesson12.check_5(..., w=w, eps=eps).done


def test_6_success_from_matrix(student_mode):
    clean = torch.tensor([True, True, True, True, False, True, False, True])
    correct = torch.tensor([True, False, False, True, False, False, False, True])
    right = 3 / 6                                   # 3 of the 6 correct images flipped
    ctx = dict(clean=clean, correct=correct)
    assert lesson12.check_6(right, **ctx).ok
    rejected(lesson12.check_6(100 * right, **ctx), "percentage")
    rejected(lesson12.check_6(3 / 8, **ctx), "robust accuracy")
    rejected(lesson12.check_6(5 / 8, **ctx), "wrong before any attack")
    rejected(lesson12.check_6(0.9, **ctx), "is not it")
    assert not lesson12.check_6(..., **ctx).done


def test_wrong_answer_raises_in_a_shipped_lesson():
    exercises.student_copy(False)
    with pytest.raises(ExerciseError, match="12.1"):
        lesson12.check_1("noise", eps=2, fgsm_accuracy=0.05, noise_accuracy=0.7)


@pytest.fixture(scope="module")
def toy_mlp():
    """A 2-D toy like the lesson's: three blobs, an MLP trained for a few hundred steps."""
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[-1.5, -0.8], [1.5, -0.8], [0.0, 1.6]])
    y = torch.arange(3).repeat_interleave(40)
    x = centers[y] + 0.5 * torch.randn(120, 2, generator=g)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval().requires_grad_(False), x


def ascend(net, start, target, steps=300):
    z = torch.tensor(start, requires_grad=True)
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        (-net(z[None]).log_softmax(1)[0, target]).backward()
        opt.step()
    return z.detach()


def test_7_confident_far_point(student_mode, toy_mlp):
    net, data = toy_mlp
    far = ascend(net, [0.0, 16.0], 2)
    p = lambda pt: net(pt[None]).softmax(1)[0]
    assert float(p(far)[2]) >= 0.99 and float(torch.cdist(far[None], data).min()) >= 10
    ctx = dict(toy=net, data=data, target=2)
    assert lesson12.check_7(far, **ctx).ok
    assert lesson12.check_7(far.tolist(), **ctx).ok                     # a list of two floats is a point too
    rejected(lesson12.check_7(data[100].clone(), **ctx), "from the nearest training point", "start the ascent")
    other = ascend(net, [16.0, -12.0], 1)                                # sure, far, but of class 1
    assert float(p(other)[1]) >= 0.99
    rejected(lesson12.check_7(other, **ctx), "not of class 2")
    weak = ascend(net, [12.0, 12.0], 2, steps=0)                         # far, no ascent: not sure of class 2
    if float(p(weak).max()) < 0.99:
        rejected(lesson12.check_7(weak, **ctx), "below 0.99")
    else:
        rejected(lesson12.check_7(weak, **ctx, min_p=float(p(weak)[2]) + 1e-3), "below")
    rejected(lesson12.check_7(torch.stack([far, far]), **ctx), "2 finite numbers", "one row")
    assert not lesson12.check_7(..., **ctx).done


def test_8_penalized_objective(student_mode, nets, photo):
    from cnnviz_helpers.attacks import penalized_attack
    model, c = nets[0], 0.1
    label = int(model(photo).argmax())
    target = int(model(photo).argsort(descending=True)[0, 1])
    adv = penalized_attack(model, photo, target, c=c, steps=10, lr=1 / 255)
    r = (adv - photo).flatten()
    with torch.no_grad():
        z = model(adv)
    ce, ce_true = float(F.cross_entropy(z, torch.tensor([target]))), float(F.cross_entropy(z, torch.tensor([label])))
    l2 = float(r.norm())
    assert l2 > 0.05
    ctx = dict(model=model, x=photo, x_adv=adv, target=target, c=c, label=label)
    assert lesson12.check_8(c * l2 + ce, **ctx).ok
    rejected(lesson12.check_8(c * l2 ** 2 + ce, **ctx), "squared the norm")
    rejected(lesson12.check_8(c * float(r.abs().max()) + ce, **ctx), "L-inf")
    rejected(lesson12.check_8(l2 + ce, **ctx), "multiply ||r||_2 by c")
    rejected(lesson12.check_8(ce, **ctx), "the loss alone")
    rejected(lesson12.check_8(c * l2 + ce_true, **ctx), "true class")
    rejected(lesson12.check_8(c * l2 + float(z.softmax(-1)[0, target]), **ctx), "not the probability")
    rejected(lesson12.check_8(c * l2 + ce + 0.5, **ctx), "is not it")
    assert not lesson12.check_8(..., **ctx).done
