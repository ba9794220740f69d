"""Lesson 02's exercise checks: the official answers pass, typical mistakes get their hint, stubs are not done."""
import pytest
import torch
import torch.nn.functional as F

from cnnviz_helpers import exercises, load_model
from cnnviz_helpers.exercises import ExerciseError, lesson02
from support import hint

pytestmark = pytest.mark.usefixtures("student_mode")  # checks return Feedback


@pytest.fixture(scope="module")
def weights():
    model = load_model()
    W = model.net._conv_stem.weight.detach().cpu()               # (32, 3, 3, 3)
    dw = model.net._blocks[1]._depthwise_conv.weight.detach().cpu()  # (96, 1, 3, 3)
    norms = W.flatten(1).norm(dim=1)
    return W, dw, norms > 1e-3 * norms.max()


def test_1_prediction_against_the_ascent(weights):
    _, dw, _ = weights
    v = torch.rand(dw.shape, generator=torch.Generator().manual_seed(0))   # as the lesson: projected ascent
    for _ in range(300):
        v = (v + 0.3 * dw / dw.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).clamp(min=0)  # grad of w.v is w
        v = v / v.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, 1, 1, 1)
    mixed = (dw.flatten(1) > 0).any(1) & (dw.flatten(1) < 0).any(1)
    fit = {n: float(F.cosine_similarity(v.flatten(1)[mixed], c.flatten(1)[mixed]).mean())
           for n, c in {"w": dw, "w+": dw.clamp(min=0), "|w|": dw.abs()}.items()}
    measured = max(fit, key=fit.get)
    assert measured == "w+"
    assert lesson02.check_1("w+", measured=measured).ok
    assert "cannot point along them" in hint(lesson02.check_1("w", measured=measured))
    assert "*lowers* w . x" in hint(lesson02.check_1("|w|", measured=measured))
    assert "answer one of" in hint(lesson02.check_1("relu(w)", measured=measured))
    assert not lesson02.check_1(..., measured=measured).done


def test_2_vertical_edge(weights):
    W, _, _ = weights
    edge = torch.zeros(1, 3, 3, 3)
    edge[..., 0], edge[..., 2] = -1.0, 1.0
    r = F.conv2d(edge, W)[0, :, 0, 0]
    assert lesson02.check_2((int(r.argmax()), float(r.max())), W=W).ok
    reversed_r = F.conv2d(-edge, W)[0, :, 0, 0]
    assert "reversed" in hint(lesson02.check_2((int(reversed_r.argmax()), float(reversed_r.max())), W=W))
    horizontal = F.conv2d(edge.transpose(2, 3), W)[0, :, 0, 0]
    assert "*horizontal*" in hint(lesson02.check_2((int(horizontal.argmax()), 1.0), W=W))
    cos = r / W.flatten(1).norm(dim=1)
    assert "cosine" in hint(lesson02.check_2((int(cos.argmax()), float(cos.max())), W=W))
    k = int(r.argmax())
    assert "divided the response" in hint(lesson02.check_2((k, float(cos[k])), W=W))
    assert "wrong sign" in hint(lesson02.check_2((k, -float(r[k])), W=W))
    assert "pair" in hint(lesson02.check_2(k, W=W))
    assert not lesson02.check_2(..., W=W).done


def test_3_smallest_response(weights):
    w0 = weights[0][0]
    assert lesson02.check_3(-w0 / w0.norm(), w=w0).ok
    assert "*largest* response" in hint(lesson02.check_3(w0 / w0.norm(), w=w0))
    assert "divide by the norm" in hint(lesson02.check_3(-w0, w=w0))
    assert "expected (3, 3, 3)" in hint(lesson02.check_3((-w0 / w0.norm()).flatten(), w=w0))
    assert "tensor of shape" in hint(lesson02.check_3(-float(w0.norm()), w=w0))
    other = torch.randn(3, 3, 3, generator=torch.Generator().manual_seed(1))
    assert "random unit patch" in hint(lesson02.check_3(other / other.norm(), w=w0))
    assert not lesson02.check_3(..., w=w0).done


def test_4_red_green_fraction(weights):
    W, _, live = weights
    u = torch.tensor([1.0, -1.0, 0.0]) / 2 ** 0.5
    energy = W.flatten(1).norm(dim=1) ** 2
    def fraction(P):
        return torch.einsum("cd,kdij->kcij", P, W).flatten(1).norm(dim=1) ** 2 / energy
    right = fraction(torch.outer(u, u))
    assert lesson02.check_4(right, W=W, live=live).ok
    assert "normalized" in hint(lesson02.check_4(fraction(torch.outer(u, u) * 2 ** 0.5), W=W, live=live))
    assert "squared norms" in hint(lesson02.check_4(right.sqrt(), W=W, live=live))
    assert "*but*" in hint(lesson02.check_4(1 - right, W=W, live=live))
    per_pixel = torch.einsum("cd,kdij->kcij", torch.outer(u, u), W).pow(2).sum(1)
    assert "over the pixels" in hint(lesson02.check_4(per_pixel, W=W, live=live))
    assert "(32,)" in hint(lesson02.check_4(right[:10], W=W, live=live))
    assert not lesson02.check_4(..., W=W, live=live).done


def test_wrong_answer_raises_outside_student_mode(weights):
    exercises.student_copy(False)
    with pytest.raises(ExerciseError, match="cannot point along them"):
        lesson02.check_1("w", measured="w+")
    with pytest.raises(ExerciseError, match="not done yet"):
        lesson02.check_3(..., w=weights[0][0])


def _first_conv_gradient(model, k=0, size=32):
    """The input gradient of first_conv's centre unit of filter k at a grey image, cropped to its window."""
    from cnnviz_helpers import capture, receptive_field
    rf = receptive_field(model, "first_conv")
    x0 = torch.full((1, 3, size, size), 0.5, requires_grad=True)
    with capture(model, ["first_conv"], stop=True) as rec:
        rec.run(x0)
        a = rec["first_conv"]
        i, j = a.shape[2] // 2, a.shape[3] // 2
        (g,) = torch.autograd.grad(a[0, k, i, j], x0)
    t, l, b, r = rf.box(i, j)
    return g[0, :, t:b + 1, l:r + 1]


def test_5_effective_filter_of_the_first_convolution(weights):
    model = load_model()
    W = weights[0]
    grad = _first_conv_gradient(model)
    std = model.std
    right = W[0] / torch.tensor(std).view(3, 1, 1)
    assert torch.allclose(grad, right, atol=1e-6)                 # the closed form is the backward pass
    assert lesson02.check_5(right, grad=grad, w=W[0], std=std).ok
    assert "the weight itself" in hint(lesson02.check_5(W[0], grad=grad, w=W[0], std=std))
    assert "multiplied by std" in hint(lesson02.check_5(W[0] * 0.5, grad=grad, w=W[0], std=std))
    assert "sign is flipped" in hint(lesson02.check_5(-right, grad=grad, w=W[0], std=std))
    assert "expected (3, 3, 3)" in hint(lesson02.check_5(right.flatten(), grad=grad, w=W[0], std=std))
    assert "not the gradient" in hint(lesson02.check_5(right + 1, grad=grad, w=W[0], std=std))
    assert not lesson02.check_5(..., grad=grad, w=W[0], std=std).done


def test_5_colour_axis_with_unequal_stds():
    w = torch.randn(3, 3, 3, generator=torch.Generator().manual_seed(3))
    std = (0.229, 0.224, 0.225)                                   # ImageNet's: a different std per colour
    grad = w / torch.tensor(std).view(3, 1, 1)
    assert lesson02.check_5(grad, grad=grad, w=w, std=std).ok
    assert "along the columns" in hint(lesson02.check_5(w / torch.tensor(std), grad=grad, w=w, std=std))
