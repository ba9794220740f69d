"""Lesson 10's exercise checks: the official answers pass, typical mistakes get their hint, stubs are "not done"."""
import pytest
import torch

from cnnviz_helpers import capture, exercises, load_model
from cnnviz_helpers import objectives as obj
from cnnviz_helpers import params
from cnnviz_helpers.exercises import ExerciseError, lesson10
from cnnviz_helpers.optimize import optimize
from support import hint

pytestmark = pytest.mark.usefixtures("student_mode")  # checks return Feedback

LAYERS = ["block2", "block3", "block4"]
LR = 0.01


@pytest.fixture(scope="module")
def setup():
    model = load_model()
    g = torch.Generator().manual_seed(0)
    photo = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 10, generator=g), size=(64, 80), mode="bilinear",
                                            align_corners=False)                   # a smooth non-square image
    loop = optimize(model, obj.layer_l2("block3"), params.from_image(photo), steps=1, lr=LR,
                    optimizer="normalized", progress=False).image
    x = photo.clone().requires_grad_(True)
    with capture(model, ["block3"]) as rec:
        model(x)
        (grad,) = torch.autograd.grad(rec["block3"].pow(2).mean(), x)
    dreamed = (photo + 0.05 * torch.randn(photo.shape, generator=g)).clamp(0, 1)   # stands in for a dream
    return model, photo, loop, grad, dreamed


def test_1_prediction():
    check = lambda p, before, after: lesson10.check_1(p, neg_before=before, neg_after=after)
    assert check("grow", 10.0, 15.0).ok and check(" Grow", 10.0, 15.0).ok and check("shrink", 10.0, 5.0).ok
    assert "counts a -3 exactly like a +3" in hint(check("shrink", 10.0, 15.0))
    assert "(shrink)" in hint(check("grow", 10.0, 5.0))
    assert 'the string "grow" or "shrink"' in hint(check(True, 10.0, 15.0))
    assert not check(..., 10.0, 15.0).done


def test_2_normalized_step(setup):
    _, photo, loop, g, _ = setup
    check = lambda a: lesson10.check_2(a, photo=photo, loop_image=loop, lr=LR)
    assert check((photo + LR * g / g.abs().mean()).clamp(0, 1)).ok
    assert "wrong way" in hint(check((photo - LR * g / g.abs().mean()).clamp(0, 1)))
    assert "times the step" in hint(check((photo + LR * g / g.abs().sum()).clamp(0, 1)))
    assert "clamp the stepped image" in hint(check(photo + 50 * LR * g / g.abs().mean()))
    assert "the photo's shape (1, 3, 64, 80)" in hint(check((photo + LR * g / g.abs().mean())[0]))
    assert "should be a tensor" in hint(check(photo.numpy()))
    assert not check(...).done
    other = lambda a: lesson10.check_2(a, photo=photo, loop_image=loop, lr=LR, layer="early_mid")
    assert other((photo + LR * g / g.abs().mean()).clamp(0, 1)).ok
    noise = 0.01 * torch.randn(photo.shape, generator=torch.Generator().manual_seed(1))
    assert "mean of h² at 'early_mid'" in hint(other((photo + noise).clamp(0, 1)))


def test_3_octave_heights():
    check = lambda a: lesson10.check_3(a, height=256, octaves=4, scale=1.4)
    official = [round(256 / 1.4**k) for k in (3, 2, 1, 0)]
    assert official == [93, 131, 183, 256] and check(official).ok
    assert "smallest first" in hint(check(official[::-1]))
    assert "rounded at every step" in hint(check([94, 131, 183, 256]))
    assert "int() cuts off" in hint(check([int(256 / 1.4**k) for k in (3, 2, 1, 0)]))
    assert "4 octaves, 4 heights" in hint(check([131, 183, 256]))
    assert "should be an integer" in hint(check([256 / 1.4**k for k in (3, 2, 1, 0)]))
    assert not check(...).done


def test_4_cross_layer_growth(setup):
    model, photo, _, _, dreamed = setup
    norm = lambda x, layer: float(obj.features(model, x, [layer])[layer].pow(2).sum().sqrt())
    official = {l: norm(dreamed, l) / norm(photo, l) for l in LAYERS}
    own = {l: v * (1.5 + i) for i, (l, v) in enumerate(official.items())}          # each layer on its own dream
    check = lambda a: lesson10.check_4(a, model=model, photo=photo, dreamed=dreamed, layers=LAYERS, own_growth=own)
    assert check(official).ok
    assert "upside down" in hint(check({l: 1 / v for l, v in official.items()}))
    assert "squared norms" in hint(check({l: v**2 for l, v in official.items()}))
    assert "on *its own* dream" in hint(check(own))
    assert "missing ['block4']" in hint(check({l: official[l] for l in LAYERS[:2]}))
    assert "write a dict" in hint(check(list(official.values())))
    assert not check({**official, "block4": ...}).done


def test_wrong_answer_raises_outside_student_mode():
    exercises.student_copy(False)
    with pytest.raises(ExerciseError, match="not yet right"):
        lesson10.check_3([256, 183, 131, 93], height=256, octaves=4, scale=1.4)
    with pytest.raises(ExerciseError, match="not done yet"):
        lesson10.check_1(..., neg_before=1.0, neg_after=2.0)


def test_5_single_neuron_gradient():
    h = torch.randn(1, 4, 5, 7, generator=torch.Generator().manual_seed(3))     # non-square maps
    k, i, j = 2, 1, 4
    check = lambda a: lesson10.check_5(a, h=h, k=k, i=i, j=j)
    right = torch.zeros_like(h)
    right[0, k, i, j] = 2 * h[0, k, i, j]
    assert check(right).ok
    half = right / 2
    assert "left out the factor 2" in hint(check(half))
    assert "the whole layer's objective" in hint(check(2 * h))
    assert "the whole layer's objective" in hint(check(h.clone()))
    assert "sign is flipped" in hint(check(-right))
    swapped = torch.zeros_like(h)
    swapped[0, k, j, i] = 2 * h[0, k, j, i]
    assert "row 4, column 1" in hint(check(swapped))
    extra = right.clone()
    extra[0, 0, 0, 0] = 1.0
    assert "1 entries other than channel 2" in hint(check(extra))
    wrong_value = right.clone()
    wrong_value[0, k, i, j] = 3.0
    assert "should be 2·h_ij" in hint(check(wrong_value))
    assert "shaped like h_photo" in hint(check(right.numpy()))
    assert "(1, 4, 5, 7)" in hint(check(right[0]))
    assert not check(...).done
