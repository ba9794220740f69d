"""Objectives and penalties against independent computations on the tiny CNN (non-square 32x40 inputs)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnviz_helpers import objectives as O
from cnnviz_helpers.objectives import Context
from support import tiny_input, tiny_model


def _by_hand(m, x):
    """The tiny net's activations computed layer by layer, without hooks."""
    net = m.net
    z = (x - 0.5) / 0.5
    conv1 = F.conv2d(z, net.features[0].weight, net.features[0].bias, padding=1)
    pool1 = F.max_pool2d(conv1.clamp(min=0), 2)
    conv2 = F.conv2d(pool1, net.features[3].weight, net.features[3].bias)
    relu2 = conv2.clamp(0, 6)
    logits = relu2.mean((2, 3)) @ net.fc.weight.T + net.fc.bias
    return {"conv1": conv1, "conv2": conv2, "relu2": relu2, "logits": logits}


def _ctx(m, x, layers=("conv1", "conv2", "relu2")):
    h = _by_hand(m, x)
    return Context(image=x, input=x, logits=h["logits"], activations={k: h[k] for k in layers}), h


@pytest.fixture
def setup():
    m, x = tiny_model(), tiny_input(n=2)
    ctx, h = _ctx(m, x)
    return m, x, ctx, h


def test_features_equal_hand_computation(setup):
    m, x, _, h = setup
    f = O.features(m, x, ["conv1", "conv2"])
    assert torch.allclose(f["conv1"], h["conv1"], atol=1e-5)
    assert torch.allclose(f["conv2"], h["conv2"], atol=1e-5)
    assert not f["conv2"].requires_grad


def test_features_bad_layer_names_it():
    with pytest.raises(KeyError, match=r"unknown layer 'conv9' in CourseModel 'tiny'. Closest valid names: conv2, conv1"):
        O.features(tiny_model(), tiny_input(), ["conv1", "conv9"])


def test_class_logit_and_log_prob(setup):
    m, x, ctx, h = setup
    assert torch.allclose(O.class_logit(3)(ctx), h["logits"][:, 3], atol=1e-5)
    assert torch.allclose(O.class_logit([1, 4])(ctx), torch.stack([h["logits"][0, 1], h["logits"][1, 4]]), atol=1e-5)
    lp = h["logits"] - torch.logsumexp(h["logits"], 1, keepdim=True)
    assert torch.allclose(O.log_prob(2)(ctx), lp[:, 2], atol=1e-5)


def test_class_errors(setup):
    _, _, ctx, _ = setup
    with pytest.raises(IndexError, match=r"class index 7 is out of range: the model has classes 0..4"):
        O.class_logit(7)(ctx)
    with pytest.raises(ValueError, match=r"got 3 classes for a batch of 2 images"):
        O.class_logit([0, 1, 2])(ctx)
    with pytest.raises(TypeError, match=r"a class must be an index, a name or a list"):
        O.class_logit(1.5)
    with pytest.raises(KeyError, match=r"unknown ImageNet class 'ostrch'.*ostrich"):
        O.class_logit("ostrch")
    assert repr(O.class_logit("ostrich")) == "class_logit(9)"


def test_channel_and_neuron(setup):
    _, _, ctx, h = setup
    assert torch.allclose(O.channel("conv2", 4)(ctx), h["conv2"][:, 4].mean((1, 2)), atol=1e-6)
    c2 = h["conv2"]          # (2, 6, 14, 18): non-square
    assert c2.shape[-2:] == (14, 18)
    assert torch.allclose(O.neuron("conv2", 1)(ctx), c2[:, 1, 7, 9])
    assert torch.allclose(O.neuron("conv2", 1, 3, 17)(ctx), c2[:, 1, 3, 17])
    with pytest.raises(IndexError, match=r"channel 6 is out of range: layer 'conv2' has channels 0..5"):
        O.channel("conv2", 6)(ctx)
    with pytest.raises(IndexError, match=r"position \(14, 0\) is outside layer 'conv2''s 14x18 maps \(rows 0..13, columns 0..17\)"):
        O.neuron("conv2", 0, 14, 0)(ctx)
    with pytest.raises(ValueError, match=r"give both i and j"):
        O.neuron("conv2", 0, 3)
    with pytest.raises(ValueError, match=r"channel must be >= 0, got -1"):
        O.channel("conv2", -1)


def test_neurons_one_unit_per_image(setup):
    _, _, ctx, h = setup
    c2 = h["conv2"]                                                      # (2, 6, 14, 18)
    assert torch.equal(O.neurons("conv2", [4, 1])(ctx), torch.stack([c2[0, 4, 7, 9], c2[1, 1, 7, 9]]))
    same = O.neurons("conv2", [2, 2])(ctx)
    assert torch.equal(same, O.neuron("conv2", 2)(ctx))
    with pytest.raises(ValueError, match=r"has 3 units for a batch of 2 images"):
        O.neurons("conv2", [0, 1, 2])(ctx)
    with pytest.raises(IndexError, match=r"channel 6 is out of range: layer 'conv2' has channels 0..5"):
        O.neurons("conv2", [0, 6])(ctx)
    with pytest.raises(ValueError, match=r"channel must be >= 0, got -1"):
        O.neurons("conv2", [0, -1])
    with pytest.raises(ValueError, match=r"at least one unit"):
        O.neurons("conv2", [])
    assert torch.allclose(O.channels("conv2", [4, 1])(ctx), torch.stack([c2[0, 4].mean(), c2[1, 1].mean()]), atol=1e-6)
    assert torch.equal(O.channels("conv2", [3, 3])(ctx), O.channel("conv2", 3)(ctx))
    with pytest.raises(ValueError, match=r"channels\('conv2', ...\) has 1 units for a batch of 2 images"):
        O.channels("conv2", [0])(ctx)


def test_channel_on_flat_layer():
    ctx = Context(image=torch.zeros(2, 3, 8, 8), input=torch.zeros(2, 3, 8, 8),
                  activations={"fc": torch.tensor([[1.0, 2.0], [3.0, 4.0]])})
    assert O.channel("fc", 1)(ctx).tolist() == [2.0, 4.0]
    assert O.neuron("fc", 0)(ctx).tolist() == [1.0, 3.0]
    with pytest.raises(ValueError, match=r"layer 'fc' has no spatial positions"):
        O.neuron("fc", 0, 1, 1)(ctx)


def test_layer_l2(setup):
    _, _, ctx, h = setup
    a = h["conv1"].detach().numpy()
    assert np.allclose(O.layer_l2("conv1", reduction="sum")(ctx).detach().numpy(), (a ** 2).reshape(2, -1).sum(1), rtol=1e-5)
    assert np.allclose(O.layer_l2("conv1")(ctx).detach().numpy(), (a ** 2).reshape(2, -1).mean(1), rtol=1e-5)
    with pytest.raises(ValueError, match=r"unknown reduction 'max': choose one of mean, sum"):
        O.layer_l2("conv1", reduction="max")


def test_feature_match_is_the_normalized_distance(setup):
    _, _, ctx, h = setup
    phi = h["conv2"].detach()
    target = phi[:1] * 0.5
    got = O.feature_match("conv2", target)(ctx)
    d = phi.numpy() - target.numpy()
    want = -(d ** 2).reshape(2, -1).sum(1) / (target.numpy() ** 2).sum()
    assert np.allclose(got.detach().numpy(), want, rtol=1e-5)
    assert torch.allclose(O.feature_match("conv2", phi)(ctx), torch.zeros(2), atol=1e-6)
    with pytest.raises(ValueError, match=r"target for layer 'conv2' has shape \(1, 6, 7, 9\) but the layer gives \(2, 6, 14, 18\)"):
        O.feature_match("conv2", torch.ones(1, 6, 7, 9))(ctx)
    with pytest.raises(ValueError, match="all zeros"):
        O.feature_match("conv2", torch.zeros(1, 6, 14, 18))


def test_content_matches_gatys(setup):
    _, _, ctx, h = setup
    P = torch.randn(1, 6, 14, 18, generator=torch.Generator().manual_seed(3))
    Fm = h["conv2"].detach().numpy()
    want_sum = -0.5 * ((Fm - P.numpy()) ** 2).reshape(2, -1).sum(1)
    assert np.allclose(O.content("conv2", P, reduction="sum")(ctx).detach().numpy(), want_sum, rtol=1e-5)
    assert np.allclose(O.content("conv2", P)(ctx).detach().numpy(), 2 * want_sum / Fm[0].size, rtol=1e-5)


def test_gram_and_style_equal_gatys_formula(setup):
    _, _, ctx, h = setup
    a = h["conv2"].detach()
    g = O.gram_matrix(a)
    n, c, hh, ww = a.shape
    loops = np.zeros((n, c, c))
    an = a.numpy()
    for b in range(n):
        for i in range(c):
            for j in range(c):
                loops[b, i, j] = (an[b, i] * an[b, j]).sum() / (hh * ww)
    assert np.allclose(g.numpy(), loops, rtol=1e-5, atol=1e-6)
    # Gatys: E = 1/(4 N^2 M^2) sum (G - A)^2 with unnormalized Grams
    A = torch.randn(c, c, generator=torch.Generator().manual_seed(5)).abs()
    G_un = loops * hh * ww
    A_un = A.numpy() * hh * ww
    e_conv2 = ((G_un - A_un) ** 2).reshape(n, -1).sum(1) / (4 * c ** 2 * (hh * ww) ** 2)
    A1 = O.gram_matrix(h["conv1"].detach()[:1])
    g1 = O.gram_matrix(h["conv1"].detach()).numpy()
    e_conv1 = ((g1 - A1.numpy()) ** 2).reshape(n, -1).sum(1) / (4 * 4 ** 2)
    got = O.style({"conv2": A, "conv1": A1}, weights={"conv2": 0.25, "conv1": 2.0})(ctx)
    assert np.allclose(got.detach().numpy(), -(0.25 * e_conv2 + 2.0 * e_conv1), rtol=1e-5)
    default = O.style({"conv2": A, "conv1": A1})(ctx)
    assert np.allclose(default.detach().numpy(), -(0.5 * e_conv2 + 0.5 * e_conv1), rtol=1e-5)
    assert O.style({"conv2": A, "conv1": A1}).layers == ("conv2", "conv1")


def test_style_errors():
    with pytest.raises(ValueError, match=r"style weights must name exactly the target layers \['conv1'\]; unknown: \['conv2'\]"):
        O.style({"conv1": torch.eye(4)}, weights={"conv1": 1.0, "conv2": 1.0})
    with pytest.raises(ValueError, match=r"must be \(C,C\) or \(N,C,C\), got \(4, 3\)"):
        O.style({"conv1": torch.ones(4, 3)})
    with pytest.raises(ValueError, match="non-empty"):
        O.style({})
    with pytest.raises(ValueError, match=r"gram_matrix needs \(N,C,H,W\) feature maps, got \(3, 4\)"):
        O.gram_matrix(torch.ones(3, 4))


def test_penalties_by_hand():
    x = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    ctx = Context(image=x, input=x)
    a = x.numpy().astype(np.float64)
    assert np.allclose(O.l2()(ctx).numpy(), ((a - 0.5) ** 2).reshape(2, -1).mean(1), rtol=1e-5)
    assert np.allclose(O.l2(center=0.0)(ctx).numpy(), (a ** 2).reshape(2, -1).mean(1), rtol=1e-5)
    assert np.allclose(O.alpha_norm(6)(ctx).numpy(), (np.abs(a - 0.5) ** 6).reshape(2, -1).mean(1), rtol=1e-4)
    for beta in (1.0, 2.0, 1.5):
        want = np.zeros(2)
        for b in range(2):
            tot = 0.0
            for c in range(3):
                for i in range(4):
                    for j in range(6):
                        d2 = (a[b, c, i, j + 1] - a[b, c, i, j]) ** 2 + (a[b, c, i + 1, j] - a[b, c, i, j]) ** 2
                        tot += d2 ** (beta / 2)
            want[b] = tot / (3 * 4 * 6)
        assert np.allclose(O.tv(beta, eps=0)(ctx).numpy(), want, rtol=1e-4), beta
    with pytest.raises(ValueError, match=r"beta must be a positive number, got 0"):
        O.tv(0)


def test_blur_penalty_against_numpy_convolution():
    x = torch.rand(1, 3, 9, 12, generator=torch.Generator().manual_seed(2))
    sigma = 1.3
    r = int(np.ceil(3 * sigma))
    k = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    a = x[0].numpy().astype(np.float64)
    blurred = np.zeros_like(a)
    for c in range(3):
        p = np.pad(a[c], r, mode="edge")
        rows = np.stack([np.convolve(row, k, mode="valid") for row in p])          # horizontal
        blurred[c] = np.stack([np.convolve(col, k, mode="valid") for col in rows.T]).T
    want = ((a - blurred) ** 2).mean()
    got = O.blur(sigma)(Context(image=x, input=x))
    assert np.allclose(got.numpy(), [want], rtol=1e-4)


def test_composition_values_layers_and_repr(setup):
    _, _, ctx, h = setup
    a, b, c = O.channel("conv2", 1), O.class_logit(2), O.tv()
    combo = a + 2 * b - c / 4
    assert torch.allclose(combo(ctx), a(ctx) + 2 * b(ctx) - c(ctx) / 4)
    assert torch.allclose((a * b)(ctx), a(ctx) * b(ctx))
    assert torch.allclose((a / b)(ctx), a(ctx) / b(ctx))
    assert torch.allclose((-a + 3)(ctx), 3 - a(ctx))
    assert torch.allclose((1 - a)(ctx), 1 - a(ctx))
    assert combo.layers == ("conv2",) and combo.needs_logits
    assert not (a - c).needs_logits
    assert (O.channel("conv1", 0) + O.layer_l2("conv2") + O.neuron("conv1", 1)).layers == ("conv1", "conv2")
    assert repr(combo) == "channel('conv2', 1) + 2*class_logit(2) - tv(beta=2)/4"
    assert repr(a - (b - c)) == "channel('conv2', 1) - (class_logit(2) - tv(beta=2))"
    assert repr(O.class_logit(1) - 0.01 * O.l2()) == "class_logit(1) - 0.01*l2(center=0.5)"
    with pytest.raises(TypeError, match=r"cannot combine an Objective with str 'x' using '\+'"):
        a + "x"
    with pytest.raises(ZeroDivisionError, match="cannot divide objective"):
        a / 0


def test_context_names_missing_layer(setup):
    _, _, ctx, _ = setup
    with pytest.raises(KeyError, match=r"layer 'fc' was not recorded.*conv1, conv2, relu2"):
        O.channel("fc", 0)(ctx)
