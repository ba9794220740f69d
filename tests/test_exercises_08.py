"""Lesson 08's exercise checks: the official answers pass, typical wrong answers get their specific hint,
the stub is "not done", and outside a student copy a wrong answer is an error."""
import numpy as np
import pytest
import torch

from support import rejected
from test_exercises_07 import model  # noqa: F401 - the shared model fixture

from cnnviz_helpers import exercises, receptive_field
from cnnviz_helpers import objectives as obj
from cnnviz_helpers import params
from cnnviz_helpers.exercises import ExerciseError
from cnnviz_helpers.exercises import lesson08 as L
from cnnviz_helpers.hooks import capture
from cnnviz_helpers.optimize import optimize

SIZE = 96


def test_1(student_mode):
    assert L.check_1(70, measured_width=67).ok
    rejected(L.check_1(10, measured_width=67), "too small", "67")
    rejected(L.check_1(150, measured_width=67), "too large")
    rejected(L.check_1(64, measured_width=67), "one of 10, 30, 70, 150")
    rejected(L.check_1("70", measured_width=67), "one of")
    assert not L.check_1(..., measured_width=67).done
    # another model: the page passes its layer's name and its units' spacing (VGG16's relu3_3: 40 pixels)
    assert L.check_1(30, measured_width=40, layer="early_mid (relu3_3)", stride=4).ok
    rejected(L.check_1(70, measured_width=40, layer="early_mid (relu3_3)", stride=4), "too large",
             "early_mid (relu3_3)'s units are 4 pixels apart (2 stride-2 steps)")


@pytest.fixture(scope="module")
def block3(model):
    rf = receptive_field(model, "block3", SIZE)
    xg = torch.full((1, 3, SIZE, SIZE), 0.5, requires_grad=True)      # as the lesson's solution
    with capture(model, ["block3"]) as rec:
        model(xg)
        i, j = rec["block3"].shape[2] // 2, rec["block3"].shape[3] // 2
        (grad,) = torch.autograd.grad(rec["block3"][0, 7, i, j], xg)
    nz = grad[0].abs().sum(0).nonzero()
    box = (int(nz[:, 0].min()), int(nz[:, 1].min()), int(nz[:, 0].max()), int(nz[:, 1].max()))
    return box, rf.clipped_box(i, j, SIZE, SIZE)


def test_2(block3, student_mode):
    box, rf_box = block3
    ctx = dict(rf_box=rf_box, size=SIZE)
    assert L.check_2(box, **ctx).ok
    assert L.check_2(list(np.array(box)), **ctx).ok                     # numpy ints are fine
    t, l, b, r = box
    rejected(L.check_2((b, r, t, l), **ctx), "(top, left, bottom, right)")
    rejected(L.check_2((0, 0, SIZE - 1, SIZE - 1), **ctx), "whole image")
    rejected(L.check_2((t, l, rf_box[2] + 1, r), **ctx), "off by one")
    rejected(L.check_2((t, l, t + 3, l + 3), **ctx), "covers only")
    rejected(L.check_2((float(t), l, b, r), **ctx), "int")
    rejected(L.check_2((t, l, b), **ctx), "four pixel indices")
    rejected(L.check_2((0, 0, SIZE - 1, SIZE - 1), layer="early_mid", **ctx), "centre of early_mid's map")
    assert not L.check_2(..., **ctx).done


@pytest.fixture(scope="module")
def run3(model):
    objective = obj.neuron("block4", 5, 2, 5) - 1000.0 * obj.tv()     # as the lesson's solution
    image = optimize(model, objective, params.pixels(SIZE), steps=10, lr=0.02, progress=False).image
    return objective, image


def test_3(model, run3, student_mode):
    objective, image = run3
    ctx = dict(model=model, size=SIZE)
    assert L.check_3(objective, image, **ctx).ok
    rejected(L.check_3(obj.neuron("block4", 5, 5, 2) - 1000.0 * obj.tv(), image, **ctx), "swapped")
    rejected(L.check_3(obj.neuron("block4", 5) - 1000.0 * obj.tv(), image, **ctx), "centre of the map")
    rejected(L.check_3(obj.channel("block4", 5) - 1000.0 * obj.tv(), image, **ctx), "whole channel")
    rejected(L.check_3(obj.neuron("block4", 5, 2, 5) + 1000.0 * obj.tv(), image, **ctx), "wrong sign")
    rejected(L.check_3(obj.neuron("block4", 5, 2, 5), image, **ctx), "no TV penalty")
    rejected(L.check_3(obj.neuron("block5", 5, 2, 5) - 1000.0 * obj.tv(), image, **ctx), "'block4' only")
    rejected(L.check_3("block4", image, **ctx), "must be an objective")
    rejected(L.check_3(objective, image[0], **ctx), "(1, 3, 96, 96)")
    rejected(L.check_3(objective, torch.full_like(image, 0.5), **ctx), "went *down*")
    assert not L.check_3(objective, ..., **ctx).done


def test_3_on_any_model(model, run3, student_mode):
    """The page names the layer by its stage name and passes the column; untrained, a unit need only not go down."""
    objective, image = run3
    ctx = dict(model=model, size=SIZE)
    assert L.check_3(obj.neuron("mid", 5, 2, 5) - 1000.0 * obj.tv(), image, layer="mid", **ctx).ok   # mid = block4
    assert L.check_3(objective, image, layer="mid", **ctx).ok                  # block4 is the same layer
    rejected(L.check_3(obj.neuron("block5", 5, 2, 5) - 1000.0 * obj.tv(), image, layer="mid", **ctx),
             "the unit is in 'mid' only")
    grey = torch.full_like(image, 0.5)
    assert L.check_3(objective, grey, min_rise=0.0, **ctx).ok                # unchanged: not down
    rejected(L.check_3(objective, grey, **ctx), "went *down*")                # a trained unit must rise


def test_4(student_mode):
    g = np.random.default_rng(0)
    S = g.normal(0, 3, size=(3, 20))
    ids = [4, 11, 7]
    S[np.arange(3), ids] += 12                                          # confident, as the class images
    ref = torch.softmax(torch.tensor(S), 1)[torch.arange(3), ids].float()
    ctx = dict(logits=S, ids=ids, reference=ref)
    e = np.exp(S - S.max(axis=1, keepdims=True))                        # as the lesson's solution
    P = e / e.sum(axis=1, keepdims=True)
    assert L.check_4(P[np.arange(3), ids], **ctx).ok
    rejected(L.check_4(P, **ctx), "every class's probability")
    rejected(L.check_4(P[:, ids], **ctx), "P[:, ids]")
    rejected(L.check_4(e[np.arange(3), ids], **ctx), "not normalized")
    e0 = np.exp(S - S.max(axis=0, keepdims=True))
    rejected(L.check_4((e0 / e0.sum(axis=0, keepdims=True))[np.arange(3), ids], **ctx), "axis 0")
    rejected(L.check_4(S[np.arange(3), ids], **ctx), "logits")
    rejected(L.check_4(np.log(P[np.arange(3), ids]), **ctx), "log-probabilities")
    rejected(L.check_4([0.9, 0.9, 0.9], **ctx), "must be a tensor")
    assert not L.check_4(..., **ctx).done


def test_wrong_answer_is_an_error_outside_a_student_copy():
    assert not exercises.is_student_copy()
    with pytest.raises(ExerciseError, match="08.1"):
        L.check_1(10, measured_width=67)


def test_5(student_mode):
    g = torch.Generator().manual_seed(2)
    x, grad = torch.rand(2, 3, 10, 14, generator=g), torch.randn(2, 3, 10, 14, generator=g)
    ctx = dict(x=x, g=grad, p=25)
    xn, gn = x.numpy().astype(np.float64), grad.numpy().astype(np.float64)
    contribution = np.abs(((xn - 0.5) * gn).sum(1))                    # as the lesson's solution
    answer = xn.copy()
    for n in range(len(answer)):
        answer[n][:, contribution[n] <= np.quantile(contribution[n], 0.25)] = 0.5
    assert L.check_5(answer, **ctx).ok
    assert L.check_5(torch.from_numpy(answer).float(), **ctx).ok        # a float32 tensor is fine
    # the library's step agrees with the hand computation (an independent reference)
    from cnnviz_helpers.regularizers import clip_contribution
    assert L.check_5(clip_contribution(25).on_image(x, grad, 0), **ctx).ok

    def clip(score, *, fill=0.5, whole=False, top=False):
        out = xn.copy()
        for n in range(len(out)):
            pool = score if whole else score[n]
            q = np.quantile(pool, 0.75 if top else 0.25)
            out[n][:, (score[n] >= q) if top else (score[n] <= q)] = fill
        return out

    rejected(L.check_5(clip(contribution, fill=0.0), **ctx), "0 (black)")
    rejected(L.check_5(clip(contribution, top=True), **ctx), "*largest*")
    rejected(L.check_5(clip(((xn - 0.5) * gn).sum(1)), **ctx), "absolute value")
    rejected(L.check_5(clip(np.linalg.norm(xn - 0.5, axis=1)), **ctx), "norm clip")
    rejected(L.check_5(clip(np.abs((xn * gn).sum(1))), **ctx), "forgot the centre")
    rejected(L.check_5(clip(np.abs((xn - 0.5) * gn).sum(1)), **ctx), "channel by channel")
    rejected(L.check_5(clip(contribution, whole=True), **ctx), "per image")
    rejected(L.check_5(contribution <= 0.1, **ctx), "whole clipped image")
    rejected(L.check_5(xn, **ctx), "changed 0% of the pixels")
    assert not L.check_5(..., **ctx).done


def test_6(model, student_mode):
    g = torch.Generator().manual_seed(4)
    coarse = torch.rand(1, 3, 6, 6, generator=g)
    photo = torch.nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear")   # a smooth test "photo"
    with torch.no_grad(), capture(model, ["block5"]) as rec:
        model(torch.cat([torch.full_like(photo, 0.5), photo]))
    m = rec["block5"].flatten(2).mean(2)                              # as the lesson's solution
    rise = m[1] - m[0]
    ctx = dict(model=model, photo=photo, layer="block5")
    assert L.check_6(int(rise.argmax()), **ctx).ok
    assert L.check_6(rise.argmax(), **ctx).ok                          # a 0-d tensor is fine
    assert L.check_6(int(rise.argmax()), model=model, photo=photo, layer="mid_late").ok   # block5 = mid_late
    if int(m[1].argmax()) != int(rise.argmax()):
        rejected(L.check_6(int(m[1].argmax()), **ctx), "subtract the grey image's mean")
    rejected(L.check_6(int(rise.argmin()), **ctx), "*falls* most")
    rejected(L.check_6(float(rise.argmax()), **ctx), "an int")
    rejected(L.check_6(10 ** 6, **ctx), "has channels 0..")
    other = int(rise.argsort()[len(rise) // 2])
    rejected(L.check_6(other, **ctx), "rises by")
    assert not L.check_6(..., **ctx).done


def _spectrum_case():
    """A smooth test image (3, 24, 24) and a magnitude spectrum of other test images (3, 24, 13)."""
    from cnnviz_helpers.dataset import magnitude_spectrum

    g = torch.Generator().manual_seed(6)
    coarse = torch.rand(5, 3, 6, 6, generator=g)
    imgs = torch.nn.functional.interpolate(coarse, size=(24, 24), mode="bilinear") + 0.05 * torch.rand(5, 3, 24, 24,
                                                                                                      generator=g)
    natural = magnitude_spectrum(imgs[1:]).double().numpy()
    return imgs[0].double().numpy(), natural


def test_7(student_mode):
    x, m = _spectrum_case()
    ctx = dict(image=x, natural=m)
    keep = np.ones(m.shape[1:], dtype=bool)                              # as the lesson's solution
    keep[0, 0] = False
    a = np.abs(np.fft.rfft2(x - x.mean(axis=(1, 2), keepdims=True), norm="ortho"))
    la, lm = np.log(a[:, keep]), np.log(m[:, keep])
    d = float(np.mean(np.abs((la - la.mean()) - (lm - lm.mean()))))
    assert L.check_7(d, **ctx).ok
    assert L.check_7(np.float64(d), **ctx).ok and L.check_7(torch.tensor(d), **ctx).ok
    # the library's helper is the same formula (an independent implementation, in torch)
    from cnnviz_helpers.dataset.spectrum import spectrum_distance
    lib = float(spectrum_distance(torch.from_numpy(x)[None].float(), torch.from_numpy(m).float())[0])
    assert abs(lib - d) <= 1e-6 * d and L.check_7(lib, **ctx).ok
    rejected(L.check_7(float(np.mean(np.abs(la - lm))), **ctx), "raw logs")
    pc = (la - la.mean(1, keepdims=True)) - (lm - lm.mean(1, keepdims=True))
    rejected(L.check_7(float(np.mean(np.abs(pc))), **ctx), "each channel on its own")
    rejected(L.check_7(float(np.mean(((la - la.mean()) - (lm - lm.mean())) ** 2)), **ctx), "squared")
    rejected(L.check_7(d / np.log(10), **ctx), "np.log10")
    rejected(L.check_7(float(np.mean((la - la.mean()) - (lm - lm.mean()))), **ctx), "absolute value")
    am, mm = a[:, keep], m[:, keep]
    rejected(L.check_7(float(np.mean(np.abs((am - am.mean()) - (mm - mm.mean())))), **ctx), "logarithms")
    m_dc = m.copy()
    m_dc[:, 0, 0] = 1e-3                                                 # a DC term that is not 0
    a_raw = np.abs(np.fft.rfft2(x, norm="ortho"))                        # the mean kept, the DC bin kept
    lad, lmd = np.log(a_raw.reshape(3, -1)), np.log(m_dc.reshape(3, -1))
    rejected(L.check_7(float(np.mean(np.abs((lad - lad.mean()) - (lmd - lmd.mean())))), image=x, natural=m_dc),
             "DC bin (0, 0)")
    rejected(L.check_7(float("-inf"), **ctx), "log of 0")
    rejected(L.check_7(np.mean(np.abs((la - la.mean()) - (lm - lm.mean())), axis=1), **ctx), "one number")
    rejected(L.check_7("0.3", **ctx), "one number")
    rejected(L.check_7(d * 1.1, **ctx), "expected")
    assert not L.check_7(..., **ctx).done
