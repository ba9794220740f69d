"""The optimization loop, the attacks and GIF export, on the tiny CNN (32x40 inputs) and untrained course models."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cnnviz_helpers import count_hooks, load_model
from cnnviz_helpers import objectives as O
from cnnviz_helpers import params as P
from cnnviz_helpers import transforms as T
from cnnviz_helpers.optimize import FrameRecorder, fgsm, linf_ball, optimize, pgd, save_gif
from support import raising_in, tiny_input, tiny_model


def run(m, objective, param=None, **kw):
    kw.setdefault("progress", False)
    return optimize(m, objective, param if param is not None else P.pixels((32, 40)), **kw)


def test_objective_improves_and_image_stays_valid():
    m = tiny_model()
    res = run(m, O.channel("conv2", 3) - 0.05 * O.tv(), steps=30, lr=0.05, transforms=T.jitter(2))
    assert res.steps == 30 and res.scores.shape == (30, 1)
    assert res.history[-1] > res.history[0] + 0.5
    assert float(res.image.min()) >= 0 and float(res.image.max()) <= 1
    assert res.image.shape == (1, 3, 32, 40) and not res.image.requires_grad
    assert not res.interrupted and not res.stopped
    assert all(p.grad is None for p in res.param.parameters())


def test_one_adam_step_equals_hand_computation():
    m = tiny_model()
    x0 = tiny_input()
    res = run(m, O.class_logit(2), P.from_image(x0), steps=1, lr=0.01)
    xg = x0.clone().requires_grad_(True)
    g, = torch.autograd.grad(m(xg)[0, 2], xg)
    # Adam's first step moves every coordinate by lr * sign(g) (m/sqrt(v) = g/|g|, eps aside)
    want = (x0 + 0.01 * torch.sign(g) * (g.abs() / (g.abs() + 1e-8))).clamp(0, 1)
    assert torch.allclose(res.image, want, atol=1e-6)


def test_normalized_step_equals_hand_computation():
    m = tiny_model()
    x0 = tiny_input(n=2)
    res = run(m, O.layer_l2("conv2"), P.from_image(x0), steps=1, lr=0.02, optimizer="normalized")
    xg = x0.clone().requires_grad_(True)
    z = F.conv2d(F.max_pool2d(F.conv2d((xg - 0.5) / 0.5, m.net.features[0].weight, m.net.features[0].bias,
                                       padding=1).clamp(min=0), 2), m.net.features[3].weight, m.net.features[3].bias)
    g, = torch.autograd.grad(z.pow(2).flatten(1).mean(1).sum(), xg)
    want = (x0 + 0.02 * g / g.abs().mean((1, 2, 3), keepdim=True)).clamp(0, 1)
    assert torch.allclose(res.image, want, atol=1e-5)


def test_only_declared_layers_are_hooked_and_forward_stops_early():
    m = tiny_model()
    seen = []
    calls = {"fc": 0}
    h = m.net.fc.register_forward_hook(lambda *a: calls.__setitem__("fc", calls["fc"] + 1))
    try:
        base = count_hooks(m)
        run(m, O.channel("conv1", 0), steps=3, callback=lambda s: seen.append(count_hooks(m) - base))
        assert seen == [1, 1, 1]              # one capture hook (records, notes the version, stops), on conv1 only
        assert calls["fc"] == 0               # the forward pass stopped after conv1
        seen.clear()
        run(m, O.class_logit(1) - O.tv(), steps=2, callback=lambda s: seen.append(count_hooks(m) - base))
        assert seen == [0, 0] and calls["fc"] == 2
        assert count_hooks(m) == base
    finally:
        h.remove()


def test_inplace_relu_does_not_rectify_a_hooked_conv():
    m = tiny_model()                          # conv1 is followed by ReLU(inplace=True)
    x0 = tiny_input()
    grads = []
    res = run(m, O.channel("conv1", 1), P.from_image(x0), steps=1, lr=1e-3, optimizer="sgd",
              callback=lambda s: grads.append(s.score))
    z = F.conv2d((x0 - 0.5) / 0.5, m.net.features[0].weight, m.net.features[0].bias, padding=1)
    assert float(z[:, 1].detach().min()) < 0           # the raw conv output has negative values ...
    assert torch.allclose(grads[0], z[:, 1].mean((1, 2)), atol=1e-5)  # ... and the score is the raw mean
    assert m.net.features[1].inplace is True  # restored


def test_bad_arguments_fail_before_step_one():
    m = tiny_model()
    called = []
    cb = called.append
    with pytest.raises(KeyError, match=r"unknown layer 'conv7' in CourseModel 'tiny'"):
        run(m, O.channel("conv1", 0) + O.channel("conv7", 0), callback=cb)
    with pytest.raises(ValueError, match=r"steps must be a positive integer, got 0"):
        run(m, O.class_logit(0), steps=0, callback=cb)
    with pytest.raises(ValueError, match=r"lr must be a positive number, got -0.1"):
        run(m, O.class_logit(0), lr=-0.1, callback=cb)
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamw': choose one of adam, sgd, normalized, sign"):
        run(m, O.class_logit(0), optimizer="adamw", callback=cb)
    with pytest.raises(TypeError, match=r"objective must be an Objective .* got function"):
        run(m, lambda ctx: ctx.logits[:, 0], callback=cb)
    with pytest.raises(TypeError, match=r"project works on pixels: param must be params.pixels/from_image"):
        run(m, O.class_logit(0), P.fft((32, 40)), project=lambda x: x, callback=cb)
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator, got int"):
        run(m, O.class_logit(0), generator=0, callback=cb)
    with pytest.raises(ValueError, match=r"param lives on meta but the model on cpu"):
        run(m, O.class_logit(0), P.PixelParam(torch.zeros(1, 3, 32, 40, device="meta")), callback=cb)
    assert called == []


def test_an_objective_that_ignores_the_image_is_an_error():
    with pytest.raises(RuntimeError, match=r"does not depend on the image"):
        run(tiny_model(), O.Objective(lambda ctx: torch.zeros(1), name="zero"), steps=2)


def test_layer_modified_in_place_later_is_refused():
    class AddInPlace(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 3, padding=1)

        def forward(self, x):
            out = self.conv(x)
            out += 1.0              # ResNet-style in-place change of a hooked output
            return out.mean((2, 3))

    m = AddInPlace()
    with pytest.raises(RuntimeError, match=r"output of layer 'conv' \(conv\) is modified in place later"):
        run(m, O.channel("conv", 0) + O.class_logit(0), steps=1)


def test_ctrl_c_returns_the_current_image():
    m, x0 = tiny_model(), tiny_input()
    calls = {"n": 0}

    def third_call_interrupts(mod, inp):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    h = m.net.features[3].register_forward_pre_hook(third_call_interrupts)
    try:
        res = run(m, O.class_logit(1), P.from_image(x0), steps=10, lr=0.05)
    finally:
        h.remove()
    assert res.interrupted and res.steps == 2
    two = run(m, O.class_logit(1), P.from_image(x0), steps=2, lr=0.05)
    assert torch.equal(res.image, two.image)     # exactly the state after two steps
    assert count_hooks(m) == 0


def test_callback_stop_keeps_the_scored_image_and_generator_reproducibility():
    m = tiny_model()
    imgs = []

    def stop_at_5(s):
        imgs.append(s.image)
        return s.step == 4

    res = run(m, O.class_logit(0), P.pixels((32, 40), init="noise"), steps=50, callback=stop_at_5,
              transforms=T.standard(0.25), generator=torch.Generator().manual_seed(1))
    assert res.stopped and res.steps == 5 and len(imgs) == 5
    assert torch.equal(res.image, imgs[-1])
    again = run(m, O.class_logit(0), P.pixels((32, 40), init="noise"), steps=4, transforms=T.standard(0.25),
                generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.image, imgs[-1])
    other = run(m, O.class_logit(0), P.pixels((32, 40), init="noise"), steps=4, transforms=T.standard(0.25),
                generator=torch.Generator().manual_seed(2))
    assert not torch.equal(other.image, imgs[-1])


def test_fft_param_optimizes():
    m = tiny_model()
    res = run(m, O.channel("conv2", 2), P.fft((32, 40), generator=torch.Generator().manual_seed(0)), steps=25,
              lr=0.05)
    assert res.history[-1] > res.history[0]


def test_projection_keeps_the_linf_ball():
    m, x0 = tiny_model(), tiny_input()
    res = run(m, O.class_logit(3), P.from_image(x0), steps=10, lr=0.05, project=linf_ball(x0, 3 / 255))
    d = (res.image - x0).abs().max()
    assert float(d) <= 3 / 255 + 1e-6 and float(d) > 2.9 / 255


def test_fgsm_equals_the_formula():
    m, x = tiny_model(), tiny_input(n=2)
    label = torch.tensor([1, 3])
    xg = x.clone().requires_grad_(True)
    g, = torch.autograd.grad(F.cross_entropy(m(xg), label, reduction="sum"), xg)
    eps = 2 / 255
    assert torch.allclose(fgsm(m, x, eps=eps, label=[1, 3]), (x + eps * g.sign()).clamp(0, 1), atol=1e-7)
    assert torch.allclose(fgsm(m, x, eps=eps, target=[1, 3]), (x - eps * g.sign()).clamp(0, 1), atol=1e-7)
    with pytest.raises(ValueError, match=r"give exactly one of label= .* or target="):
        fgsm(m, x, eps=eps)
    with pytest.raises(ValueError, match=r"eps must be in \(0, 1\] on the \[0,1\] pixel scale \(e.g. 2/255\), got 2"):
        fgsm(m, x, eps=2, label=1)


def test_pgd_stays_in_the_ball_and_one_step_is_fgsm():
    m, x = tiny_model(), tiny_input(n=2)
    eps = 4 / 255
    one = pgd(m, x, eps=eps, steps=1, alpha=eps, label=[0, 2])
    assert torch.allclose(one, fgsm(m, x, eps=eps, label=[0, 2]), atol=1e-7)
    adv = pgd(m, x, eps=eps, steps=20, target=4, random_start=True, generator=torch.Generator().manual_seed(0))
    assert float((adv - x).abs().max()) <= eps + 1e-6
    before = m(x).log_softmax(-1)[:, 4]
    after = m(adv).log_softmax(-1)[:, 4]
    assert bool((after > before).all())
    with pytest.raises(ValueError, match=r"until= is a target probability: use it with target="):
        pgd(m, x, eps=eps, label=1, until=0.9)


def test_pgd_until_stops_when_every_image_reached_the_target():
    m, x = tiny_model(), tiny_input(n=2)
    p0 = float(m(x).detach().softmax(-1)[:, 3].min())
    goal = min(0.99, p0 + 0.05)
    steps_seen = []
    adv = pgd(m, x, eps=16 / 255, steps=200, alpha=1 / 255, target=3, until=goal,
              callback=lambda s: steps_seen.append(s.step))
    assert float(m(adv).detach().softmax(-1)[:, 3].min()) >= goal
    assert len(steps_seen) < 200


def test_attacks_let_ctrl_c_through():
    m, x = tiny_model(), tiny_input()
    with raising_in(m, "conv2", KeyboardInterrupt()):
        with pytest.raises(KeyboardInterrupt):
            fgsm(m, x, eps=1 / 255, label=0)


def test_frame_recorder_and_gif(tmp_path):
    m = tiny_model()
    rec = FrameRecorder(every=4, size=80)
    run(m, O.class_logit(1), steps=10, callback=rec)
    assert len(rec.frames) == 4                     # steps 0, 4, 8 and the last (9)
    assert rec.frames[0].shape == (64, 80, 3) and rec.frames[0].dtype == np.uint8
    path = save_gif(rec.frames, tmp_path / "run.gif", duration_ms=50)
    with Image.open(path) as im:
        assert im.n_frames == 4 and im.size == (80, 64)
        im.seek(0)
        assert np.abs(np.asarray(im.convert("RGB"), dtype=int) - rec.frames[0].astype(int)).max() <= 8
    with pytest.raises(ValueError, match=r"save_gif needs at least one frame"):
        save_gif([], tmp_path / "x.gif")
    with pytest.raises(ValueError, match=r"the path must end in .gif, got"):
        save_gif(rec.frames, tmp_path / "x.png")


@pytest.mark.parametrize("name, layer", [("efficientnet_lite0", "block3"), ("alexnet", "conv5"),
                                         ("vgg16", "conv3"), ("resnet18", "layer2"), ("googlenet", "inception3b"),
                                         ("squeezenet1_1", "fire4")])
def test_course_models_untrained(name, layer):
    m = load_model(name, weights=None, device="cpu")
    size = (96, 120)
    for objective in (O.channel(layer, 3), O.class_logit(7) - 0.1 * O.l2()):
        res = run(m, objective, P.pixels(size, init="noise"), steps=2, lr=0.05, transforms=T.jitter(4))
        assert res.steps == 2 and res.image.shape == (1, 3, 96, 120)
    assert count_hooks(m) == 0 and not m.training
