"""What lesson 11 (style transfer) relies on, checked against independent computations.

- the Gram matrix is the sum of outer products over positions, divided by M
  (a loop, not a matrix product), and forgets where: a permutation of the
  positions leaves it unchanged while the content distance is not zero;
- the style loss equals Gatys' E_l with un-normalized Grams in numpy, also when
  the style image has another size (the lesson's claim: dividing by M is the
  rescaling to the generated image's M);
- the lesson's batched runs are the same as separate runs: one Gram target per
  image of a batch, a per-image weight beta (a constant objective) and a content
  target broadcast to the batch;
- texture synthesis from noise lowers the style loss at least 10x (the lesson's
  check, on the tiny CNN);
- the VGG-19 path of the lesson (ReLU aliases of an in-place-ReLU network) records
  un-rectified convolutions and leaves the ``inplace`` flags as found.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnviz_helpers import objectives as O
from cnnviz_helpers import params as P
from cnnviz_helpers.objectives import Context, features, gram_matrix
from cnnviz_helpers.optimize import optimize
from support import assert_untouched, tiny_input, tiny_model

LAYERS = ["conv1", "relu1", "conv2"]


def _numpy_style_loss(fx: dict, fs: dict, weights: dict) -> float:
    """Gatys et al. eq. 4-5 with un-normalized Grams; the style image's Gram rescaled to x's M."""
    total = 0.0
    for layer, w in weights.items():
        Fx = fx[layer][0].reshape(fx[layer].shape[1], -1).astype(np.float64)
        Fs = fs[layer][0].reshape(fs[layer].shape[1], -1).astype(np.float64)
        C, M = Fx.shape
        G, A = Fx @ Fx.T, Fs @ Fs.T * (M / Fs.shape[1])
        total += w * ((G - A) ** 2).sum() / (4 * C**2 * M**2)
    return total


def _np(d):
    return {k: v.numpy() for k, v in d.items()}


def test_gram_is_the_mean_outer_product_over_positions():
    m, x = tiny_model(), tiny_input(size=(32, 40), n=2)
    f = features(m, x, ["conv1"])["conv1"]                      # (2, 4, 32, 40)
    n, c, h, w = f.shape
    G = gram_matrix(f)
    for b in range(n):
        by_loop = torch.zeros(c, c, dtype=torch.float64)
        for i in range(h):
            for j in range(w):
                v = f[b, :, i, j].double()
                by_loop += torch.outer(v, v)
        assert torch.allclose(G[b].double(), by_loop / (h * w), rtol=1e-5, atol=1e-7)


def test_gram_forgets_where_content_does_not():
    m, x = tiny_model(), tiny_input(size=(32, 40))
    f = features(m, x, ["relu1"])["relu1"]
    perm = torch.randperm(32 * 40, generator=torch.Generator().manual_seed(0))
    shuffled = f.flatten(2)[:, :, perm].reshape(f.shape)
    assert torch.allclose(gram_matrix(shuffled), gram_matrix(f), rtol=1e-5, atol=1e-6)
    ctx = Context(image=x, input=x, activations={"relu1": shuffled})
    assert float(-O.content("relu1", f)(ctx)) > 1e-3            # the layout changed: content sees it


def test_style_loss_equals_gatys_in_numpy_with_different_image_sizes():
    m = tiny_model(1)
    x, s = tiny_input(seed=2, size=(32, 40)), tiny_input(seed=3, size=(44, 36))
    fx, fs = features(m, x, LAYERS), features(m, s, LAYERS)
    weights = {"conv1": 0.5, "relu1": 0.2, "conv2": 0.3}
    o = O.style({l: gram_matrix(fs[l]) for l in LAYERS}, weights)
    course = float(-o(Context(image=x, input=x, activations=fx))[0])
    assert course == pytest.approx(_numpy_style_loss(_np(fx), _np(fs), weights), rel=1e-5)


def test_batched_gram_targets_and_per_image_beta_equal_separate_objectives():
    """The lesson paints three styles in one batch and sweeps beta per image: same numbers as one by one."""
    m = tiny_model(2)
    content_img = tiny_input(seed=4, size=(32, 40))
    styles = [tiny_input(seed=s, size=(36, 36)) for s in (5, 6, 7)]
    grams = [{l: gram_matrix(f) for l, f in features(m, s, LAYERS).items()} for s in styles]
    batch_grams = {l: torch.cat([g[l] for g in grams]) for l in LAYERS}
    target = features(m, content_img, ["conv2"])["conv2"]                      # (1, ...) broadcast to the batch
    betas = [10.0, 100.0, 1000.0]
    beta = O.Objective(lambda ctx: torch.tensor(betas), name="beta")
    batched = O.content("conv2", target) + beta * O.style(batch_grams)
    xb = tiny_input(seed=8, size=(32, 40), n=3)
    fb = features(m, xb, LAYERS)
    got = batched(Context(image=xb, input=xb, activations=fb))
    for k in range(3):
        fk = {l: fb[l][k:k + 1] for l in LAYERS}
        single = O.content("conv2", target) + betas[k] * O.style(grams[k])
        want = single(Context(image=xb[k:k + 1], input=xb[k:k + 1], activations=fk))
        assert float(got[k]) == pytest.approx(float(want[0]), rel=1e-5)

    # and one optimization run of the batch equals three separate runs (Adam acts element-wise)
    run_b = optimize(m, O.content("conv2", target) + 100.0 * O.style(batch_grams),
                     P.from_image(content_img.expand(3, -1, -1, -1)), steps=3, lr=0.02, progress=False)
    for k in range(3):
        run_k = optimize(m, O.content("conv2", target) + 100.0 * O.style(grams[k]), P.from_image(content_img),
                         steps=3, lr=0.02, progress=False)
        assert torch.allclose(run_b.image[k], run_k.image[0], atol=1e-5)


def test_texture_synthesis_from_noise_lowers_the_style_loss_tenfold():
    m = tiny_model(3)
    style_img = tiny_input(seed=9, size=(40, 32))
    fs = features(m, style_img, LAYERS)
    o = O.style({l: gram_matrix(f) for l, f in fs.items()})
    p = P.pixels((32, 40), init="noise", sd=0.1, generator=torch.Generator().manual_seed(0))
    x0 = p.image()
    res = optimize(m, 1e3 * o, p, steps=150, lr=0.02, progress=False)
    w = {l: 1 / 3 for l in LAYERS}
    before = _numpy_style_loss(_np(features(m, x0, LAYERS)), _np(fs), w)
    after = _numpy_style_loss(_np(features(m, res.image, LAYERS)), _np(fs), w)
    assert before / after >= 10, (before, after)


def test_vgg19_relu_aliases_record_unrectified_convs_and_restore_inplace():
    from cnnviz_helpers import load_model

    torch.manual_seed(0)
    vgg = load_model("vgg19", weights=None, device="cpu")
    x = tiny_input(seed=10, size=(32, 40))
    inplace_before = [mod.inplace for mod in vgg.modules() if isinstance(mod, torch.nn.ReLU)]
    assert any(inplace_before)                              # torchvision's VGG rectifies in place
    f = features(vgg, x, ["conv1_1", "relu1_1", "relu4_2"])
    assert float(f["conv1_1"].min()) < 0                    # not overwritten by the in-place ReLU
    assert torch.allclose(f["relu1_1"], f["conv1_1"].clamp(min=0))
    targets = {"relu1_1": gram_matrix(f["relu1_1"])}
    obj = O.content("relu4_2", f["relu4_2"]) + 1e3 * O.style(targets)
    assert_untouched(vgg, lambda v: optimize(v, obj, P.from_image(x), steps=1, lr=0.02, progress=False))
    assert [mod.inplace for mod in vgg.modules() if isinstance(mod, torch.nn.ReLU)] == inplace_before
