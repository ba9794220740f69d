"""Lesson 01's exercise checks: the official answers pass, typical mistakes get their hint, stubs are not done."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnviz_helpers import capture, exercises, load_model, receptive_field
from cnnviz_helpers.exercises import ExerciseError, lesson01
from support import hint

pytestmark = pytest.mark.usefixtures("student_mode")  # checks return Feedback

SIZE = 96                    # small photos: block3's map is 12x12, block4's 6x6
CHAIN_3 = [(3, 2, 0), (3, 1, 1), (3, 2, 0), (3, 1, 1), (5, 2, 1), (5, 1, 2)]


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def photos():
    """Six smooth random 'photos' with made-up classes (no download), shaped like a PhotoSet."""
    g = torch.Generator().manual_seed(0)
    imgs = F.interpolate(torch.rand(6, 3, 12, 12, generator=g), size=(SIZE, SIZE), mode="bilinear")
    return SimpleNamespace(image=lambda p: imgs[p:p + 1], classes=[3, 151, 207, 285, 530, 999], all=imgs)


def recursion(layers, after=False):
    """The lesson's recursion; ``after=True`` is the classic mistake of using the jump after the layer."""
    r, j, a = 1, 1, 0
    for k, s, p in layers:
        r, j, a = (r + (k - 1) * j * s if after else r + (k - 1) * j), j * s, a - p * j
    return r, j, a


def test_1_prediction():
    assert lesson01.check_1("head", measured="head").ok
    assert "an early unit sees a few pixels" in hint(lesson01.check_1("block2", measured="head"))
    assert "noisy" in hint(lesson01.check_1("head", measured="block2"))
    assert "answer one of" in hint(lesson01.check_1("block4", measured="head"))
    assert not lesson01.check_1(..., measured="head").done


def test_2_receptive_field_of_block3(model, photos):
    x = photos.image(0).clone().requires_grad_(True)
    with capture(model, ["block3"]) as rec:
        model(x)
        a = rec["block3"]
        c = int(a[0, :, 5, 6].argmax())
        (g,) = torch.autograd.grad(a[0, c, 5, 6], x)
    g = g[0].abs().sum(0)
    rows, cols = (g.sum(1) > 0).nonzero().flatten(), (g.sum(0) > 0).nonzero().flatten()
    ctx = dict(rf=receptive_field(model, "block3"), support=(int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])),
               unit=(5, 6), size=(SIZE, SIZE))
    assert lesson01.check_2(recursion(CHAIN_3), **ctx).ok
    three = [(3, s, p) for _, s, p in CHAIN_3]
    assert "both block3 convolutions are 5x5" in hint(lesson01.check_2(recursion(three), **ctx))
    assert "*before* it" in hint(lesson01.check_2(recursion(CHAIN_3, after=True), **ctx))
    no_stride = CHAIN_3[:4] + [(5, 1, 1), (5, 1, 2)]
    assert "double at block3.1" in hint(lesson01.check_2(recursion(no_stride), **ctx))
    r, j, a = recursion(CHAIN_3)
    assert "wrong sign" in hint(lesson01.check_2((r, j, -a), **ctx))
    bottom = CHAIN_3[:4] + [(5, 2, 2), (5, 1, 2)]
    assert "*top* padding" in hint(lesson01.check_2(recursion(bottom), **ctx))
    assert "three ints" in hint(lesson01.check_2((r, j), **ctx))
    assert not lesson01.check_2(..., **ctx).done


def test_2_on_another_model_with_max_pooling():
    """AlexNet's relu3 (the early_mid layer on another model): hints without Lite0's layers, and with max-pooling
    the gradient need only lie inside the predicted box."""
    from cnnviz_helpers.receptive import ReceptiveField

    chain = [(11, 4, 2), (3, 2, 0), (5, 1, 2), (3, 2, 0), (3, 1, 1)]      # AlexNet up to relu3
    r, j, a = recursion(chain)
    rf = ReceptiveField(size=(r, r), stride=(j, j), start=(a, a))
    unit, size = (4, 6), (224, 224)
    box = (max(a + 4 * j, 0), max(a + 6 * j, 0), min(a + 4 * j + r - 1, 223), min(a + 6 * j + r - 1, 223))
    inside = (box[0] + 3, box[1] + 1, box[2] - 2, box[3])                 # max-pooling: part of the box
    ctx = dict(rf=rf, support=inside, unit=unit, size=size, layer="relu3", exact=False)
    assert lesson01.check_2((r, j, a), **ctx).ok
    assert "nonzero on" in hint(lesson01.check_2((r, j, a), **{**ctx, "exact": True}))
    outside = (box[0] - 1, box[1], box[2], box[3])
    assert "outside it" in hint(lesson01.check_2((r, j, a), **{**ctx, "support": outside}))
    assert "stride-2 layer up to relu3" in hint(lesson01.check_2(recursion(chain[:1] + chain[2:]), **ctx))
    small = hint(lesson01.check_2(recursion(chain[:-1]), **ctx))
    assert "relu3" in small and "block3" not in small
    assert "of each layer" in hint(lesson01.check_2((r, j, a + 1), **ctx))


def test_3_ties_are_right_answers(model, photos):
    """A unit that never fires (all maxima 0, common after a ReLU in an untrained network) ties every photo and
    every position: any of them is the best."""
    from cnnviz_helpers.models import imagenet_categories
    categories = imagenet_categories()
    with capture(model, ["block4"]) as rec, torch.no_grad():
        model(photos.all)
        maps = rec["block4"]
    maxima = maps.flatten(2).amax(2)
    maxima[:, 42] = maxima[0, 42]                                     # every photo tied for unit 42
    ctx = dict(model=model, photos=photos, maxima=maxima, categories=categories)
    rf = receptive_field(model, "block4")
    for p in (0, 3):
        i, j = divmod(int(maps[p, 42].argmax()), maps.shape[-1])
        centre = (rf.start[0] + i * rf.stride[0] + (rf.size[0] - 1) // 2,
                  rf.start[1] + j * rf.stride[1] + (rf.size[1] - 1) // 2)
        assert lesson01.check_3((categories[photos.classes[p]], centre), **ctx).ok
    assert "not of class" in hint(lesson01.check_3(("tabby", centre), **ctx))


def test_3_best_photo_and_centre(model, photos):
    from cnnviz_helpers.models import imagenet_categories
    categories = imagenet_categories()
    with capture(model, ["block4"]) as rec, torch.no_grad():
        model(photos.all)
        maps = rec["block4"]                                          # (6, 80, 6, 6)
    maxima = maps.flatten(2).amax(2)                                  # (6, 80)
    ctx = dict(model=model, photos=photos, maxima=maxima, categories=categories)
    best = int(maxima[:, 42].argmax())
    i, j = divmod(int(maps[best, 42].argmax()), maps.shape[-1])
    rf = receptive_field(model, "block4")
    half = (rf.size[0] - 1) // 2
    centre = (rf.start[0] + i * rf.stride[0] + half, rf.start[1] + j * rf.stride[1] + half)
    name = categories[photos.classes[best]]
    assert lesson01.check_3((name, centre), **ctx).ok
    assert "position on the" in hint(lesson01.check_3((name, (i, j)), **ctx))
    assert "top-left corner" in hint(lesson01.check_3((name, (centre[0] - half, centre[1] - half)), **ctx))
    assert "left out the start" in hint(lesson01.check_3((name, (centre[0] - rf.start[0], centre[1] - rf.start[1])),
                                                         **ctx))
    second = int(maxima[:, 42].argsort(descending=True)[1])
    assert "*second* best" in hint(lesson01.check_3((categories[photos.classes[second]], centre), **ctx))
    if categories[best] != name:
        assert "photo's index" in hint(lesson01.check_3((categories[best], centre), **ctx))
    assert "*name*" in hint(lesson01.check_3((photos.classes[best], centre), **ctx))
    assert not lesson01.check_3(..., **ctx).done


def test_4_distinct_groups():
    g = torch.Generator().manual_seed(1)
    classes = list(range(0, 1000, 33))[:30]                            # 30 photos, one class each
    images = {"block2": torch.stack([torch.randperm(30, generator=g)[:9] for _ in range(24)]),
              "head": torch.stack([torch.randperm(30, generator=g)[:9] for _ in range(40)])}
    groups = torch.tensor(classes) // 100
    right = {n: float(torch.tensor([len(set(groups[im[c]].tolist())) for c in range(len(im))]).float().mean())
             for n, im in images.items()}                            # as the lesson's solution
    assert lesson01.check_4(right, images=images, classes=classes).ok
    assert "*classes*" in hint(lesson01.check_4({n: 9.0 for n in images}, images=images, classes=classes))
    assert "photo indices" in hint(lesson01.check_4({n: 1.0 for n in images}, images=images, classes=classes))
    assert "whole number" in hint(lesson01.check_4({n: float(round(v)) for n, v in right.items()},
                                                   images=images, classes=classes))
    assert "between 1 and 9" in hint(lesson01.check_4({n: 12.5 for n in images}, images=images, classes=classes))
    assert "one entry per layer" in hint(lesson01.check_4({"block2": right["block2"]}, images=images, classes=classes))
    assert "should be a dict" in hint(lesson01.check_4(list(right.values()), images=images, classes=classes))
    assert not lesson01.check_4(..., images=images, classes=classes).done
    assert np.isclose(right["head"], lesson01._distinct(images["head"].numpy(), np.asarray(classes) // 100))


RANGES = {"dog": [(151, 268)], "bird": [(7, 24), (80, 100), (127, 146)], "reptile/amphibian": [(25, 68)],
          "other animal": [(0, 6), (69, 79), (101, 126), (147, 150), (269, 397)], "artefact": [(398, 923)],
          "food": [(924, 969)], "rest": [(970, 999)]}


def test_5_purity():
    classes = [151, 152, 160, 200, 7, 90, 400, 500, 930, 980, 30, 300]      # 4 dogs, 2 birds, 2 artefacts, ...
    images = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 8],       # 4 dogs of 9
                           [0, 1, 2, 3, 6, 7, 8, 9, 10],
                           [4, 5, 6, 7, 8, 9, 10, 11, 0]])    # 2 birds, 2 artefacts, 2 other animals (12 photos)
    right = torch.tensor([4 / 9, 4 / 9, 2 / 9])                 # computed by hand
    assert lesson01.check_5(right, images=images, classes=classes, ranges=RANGES).ok
    assert lesson01.check_5(right.tolist(), images=images, classes=classes, ranges=RANGES).ok
    assert "divide by the 9" in hint(lesson01.check_5(right * 9, images=images, classes=classes, ranges=RANGES))
    assert "not one number" in hint(lesson01.check_5(right.mean(), images=images, classes=classes, ranges=RANGES))
    assert "shape (3,)" in hint(lesson01.check_5(right[:2], images=images, classes=classes, ranges=RANGES))
    by_100 = torch.tensor([3 / 9, 3 / 9, 3 / 9])    # class // 100: e.g. row 2 has 0, 0, 4, 5, 9, 9, 0, 3, 1
    assert "exercise 4" in hint(lesson01.check_5(by_100, images=images, classes=classes, ranges=RANGES))
    by_photo = torch.tensor([7 / 9, 5 / 9, 5 / 9])  # the groups of the photo indices 0-11 as if they were classes
    assert "photo indices" in hint(lesson01.check_5(by_photo, images=images, classes=classes, ranges=RANGES))
    assert "most common coarse group" in hint(lesson01.check_5(torch.tensor([0.5, 0.4, 0.3]), images=images,
                                                               classes=classes, ranges=RANGES))
    assert not lesson01.check_5(..., images=images, classes=classes, ranges=RANGES).done

def test_wrong_answer_raises_outside_student_mode():
    exercises.student_copy(False)
    with pytest.raises(ExerciseError, match="an early unit"):
        lesson01.check_1("block2", measured="head")
    with pytest.raises(ExerciseError, match="not done yet"):
        lesson01.check_1(..., measured="head")


def deconvnet_by_hand(m, x, unit, position):
    """Zeiler & Fergus's projection on TinyNet, layer by layer without hooks: R -> max(R, 0) at each ReLU,
    the transposed convolutions, the max-pooling's forward switches, and the model's (x - 0.5) / 0.5."""
    net, (i, j) = m.net, position
    conv1, conv2 = net.features[0], net.features[3]
    with torch.no_grad():
        xn = (x - 0.5) / 0.5
        r1 = conv1(xn).clamp_min(0)
        p1, switches = F.max_pool2d(r1, 2, return_indices=True)
        a2 = conv2(p1)
        R = torch.zeros_like(a2)
        R[0, unit, i, j] = 1.0
        R = R.clamp_min(0)                                                       # ReLU6, deconvnet rule
        R = torch.nn.grad.conv2d_input(p1.shape, conv2.weight, R)
        R = F.max_unpool2d(R, switches, 2, output_size=r1.shape[-2:])
        R = R.clamp_min(0)                                                       # ReLU, deconvnet rule
        R = torch.nn.grad.conv2d_input(xn.shape, conv1.weight, R, padding=1)
    return R / 0.5


def test_6_deconvnet_projection():
    from support import tiny_input, tiny_model

    from cnnviz_helpers.attribution import Channel, Neuron, gradient
    m, x = tiny_model(0), tiny_input(1)
    unit, pos = 1, (4, 6)
    right = deconvnet_by_hand(m, x, unit, pos)
    assert float(right.abs().max()) > 0
    ctx = dict(model=m, x=x, layer="relu2", unit=unit, position=pos)
    assert lesson01.check_6(right, **ctx).ok
    assert lesson01.check_6(right[0], **ctx).ok                                  # (3, H, W) is fine too
    guided = gradient(m, x, Neuron("relu2", unit, pos), rule="guided")
    plain = gradient(m, x, Neuron("relu2", unit, pos), rule="gradient")
    whole = gradient(m, x, Channel("relu2", unit), rule="deconvnet")
    assert not torch.allclose(guided, right) and not torch.allclose(plain, right) and not torch.allclose(plain, guided)
    assert "guided backpropagation" in hint(lesson01.check_6(guided, **ctx))
    assert "plain gradient" in hint(lesson01.check_6(plain, **ctx))
    assert "whole map" in hint(lesson01.check_6(whole, **ctx))
    assert "opposite sign" in hint(lesson01.check_6(-right, **ctx))
    assert "photo's shape" in hint(lesson01.check_6(right[0, 0], **ctx))
    assert "is not the deconvnet" in hint(lesson01.check_6(right + 0.1, **ctx))
    assert not lesson01.check_6(..., **ctx).done


def test_7_concept_score():
    g = torch.Generator().manual_seed(7)
    m = torch.rand(40, 6, generator=g) * torch.tensor([1.0, 5.0, 0.2, 2.0, 1.0, 3.0]) + torch.tensor([0, 4.0, 0, 0, 1, 0])
    inside = torch.zeros(40, dtype=torch.bool)
    inside[::5] = True
    mi, mo = m[inside].mean(0), m[~inside].mean(0)
    right = (mi - mo) / m.std(0, unbiased=False)
    ctx = dict(m=m, inside=inside)
    assert lesson01.check_7(right, **ctx).ok
    assert lesson01.check_7((mi - mo) / m.std(0), **ctx).ok                          # the unbiased std is fine
    assert "alone" in hint(lesson01.check_7(mi, **ctx))
    assert "standard deviation" in hint(lesson01.check_7(mi - mo, **ctx))
    assert "*all* photos" in hint(lesson01.check_7((mi - m.mean(0)) / m.std(0, unbiased=False), **ctx))
    assert "reversed" in hint(lesson01.check_7(-right, **ctx))
    assert "whole table" in hint(lesson01.check_7((mi - mo) / m.std(), **ctx))
    assert "one score per unit" in hint(lesson01.check_7(right.mean(), **ctx))
    assert "shape (6,)" in hint(lesson01.check_7(right[:5], **ctx))
    assert "is not" in hint(lesson01.check_7(right + 1, **ctx))
    assert not lesson01.check_7(..., **ctx).done


def test_8_spearman_by_hand():
    g = np.random.default_rng(8)
    m = g.gamma(1.0, 2.0, 60)
    m[:6] = m[6:12]                                         # ties in the activations
    r = 0.3 * m ** 3 + g.normal(size=60)                    # a few large values: Pearson differs from Spearman
    ctx = dict(m=torch.tensor(m), r=torch.tensor(r))

    def ranks(a):                                           # the official answer's numpy ranks, ties averaged
        order = np.argsort(a, kind="stable")
        rk = np.empty(len(a))
        rk[order] = np.arange(1, len(a) + 1)
        for v in np.unique(a):
            rk[a == v] = rk[a == v].mean()
        return rk

    rho = float(np.corrcoef(ranks(m), ranks(r))[0, 1])
    assert lesson01.check_8(rho, **ctx).ok
    assert "Pearson's correlation of the values" in hint(lesson01.check_8(float(np.corrcoef(m, r)[0, 1]), **ctx))
    assert "argsort of the argsort" in hint(lesson01.check_8(float(np.corrcoef(np.argsort(m, kind="stable"),
                                                                              np.argsort(r, kind="stable"))[0, 1]),
                                                            **ctx))
    assert "reversed" in hint(lesson01.check_8(-rho, **ctx))
    ordinal = lambda a: np.argsort(np.argsort(a, kind="stable"), kind="stable")
    assert "ties" in hint(lesson01.check_8(float(np.corrcoef(ordinal(m), ordinal(r))[0, 1]), **ctx))
    assert "[-1, 1]" in hint(lesson01.check_8(float(((ranks(m) - 30.5) * (ranks(r) - 30.5)).mean()), **ctx))
    assert "is not Spearman" in hint(lesson01.check_8(rho * 0.9, **ctx))
    assert "one number" in hint(lesson01.check_8(torch.ones(3), **ctx))
    assert not lesson01.check_8(..., **ctx).done
    dead = dict(m=np.zeros(5), r=np.arange(5.0))            # a unit that never fires (untrained nets): no ranking
    assert lesson01.check_8(float("nan"), **dead).ok
    assert "no ranking" in hint(lesson01.check_8(0.0, **dead))
