"""Attribution (lessons 04-07) against independent computations: captum, pytorch-grad-cam,
hand-computed examples, scipy, and plain re-computations on the tiny CNN and on untrained
(``weights=None``) torchvision models. Inputs are non-square everywhere."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnviz_helpers import attribution as A
from cnnviz_helpers import load_model
from cnnviz_helpers.hooks import LayerNotCalledError, capture, count_hooks
from cnnviz_helpers.layers import resolve_layer
from cnnviz_helpers.models import CourseModel
from support import CATEGORIES, tiny_input, tiny_model

captum_attr = pytest.importorskip("captum.attr")

pytestmark = [pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU"),
              pytest.mark.filterwarnings("ignore:Input Tensor .* did not already require gradients")]


def relu_tiny(seed: int = 0) -> CourseModel:
    """The tiny CNN with its ReLU6 replaced by ReLU (captum's guided rules only override nn.ReLU)."""
    m = tiny_model(seed)
    m.net.features[4] = nn.ReLU()
    return m


@pytest.fixture(scope="module")
def alexnet():
    torch.manual_seed(0)
    return load_model("alexnet", weights=None, device="cpu")


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return load_model("resnet18", weights=None, device="cpu")



@pytest.fixture(scope="module")
def effnet():
    torch.manual_seed(0)
    return load_model("efficientnet_lite0", weights=None, device="cpu")


def close(a, b, tol=1e-6):
    a = torch.as_tensor(a).detach().float()
    b = torch.as_tensor(b).detach().float()
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(1.0, float(b.abs().max()))
    err = float((a - b).abs().max())
    assert err <= tol * scale, f"max abs difference {err:.3g} (scale {scale:.3g})"


# ---------------------------------------------------------------- the three ReLU rules by hand


class TwoLayer(nn.Module):
    """Per pixel: h = W1 x (1x1 conv), f = act(h), y_c = sum over pixels of (W2 f)_c."""

    def __init__(self, w1, w2, act):
        super().__init__()
        self.c1 = nn.Conv2d(3, 3, 1, bias=False)
        self.act = act
        self.c2 = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.c1.weight.copy_(torch.tensor(w1, dtype=torch.float32).view(3, 3, 1, 1))
            self.c2.weight.copy_(torch.tensor(w2, dtype=torch.float32).view(2, 3, 1, 1))

    def forward(self, x):
        return self.c2(self.act(self.c1(x))).sum((2, 3))


def _uniform_image(rgb, h=8, w=10):
    return torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, h, w).contiguous()


def test_three_rules_by_hand_relu():
    # x = (0.5, 1, 0.25); W1 rows give the ReLU inputs h = W1 x:
    #   h1 = 2*0.5 - 1*1 + 0*0.25 = 0    -> not > 0
    #   h2 = 1*0.5 + 1*1 - 4*0.25 = 0.5  -> > 0
    #   h3 = -1*0.5 + 2*1 + 0*0.25 = 1.5 -> > 0
    # class 0 weights (row of W2) R = (3, -2, 1): the gradient arriving at the ReLU.
    w1 = [[2, -1, 0], [1, 1, -4], [-1, 2, 0]]
    w2 = [[3, -2, 1], [0, 0, 0]]
    x = _uniform_image([0.5, 1.0, 0.25])
    m = TwoLayer(w1, w2, nn.ReLU())
    # backprop  R_in = (h>0) R       = (0, -2, 1); dx = W1^T R_in = (-2-1, -2+2, 8+0)  = (-3, 0, 8)
    # guided    R_in = (h>0)(R>0) R  = (0, 0, 1);  dx = W1^T R_in = (-1, 2, 0)
    # deconvnet R_in = (R>0) R       = (3, 0, 1);  dx = W1^T R_in = (6-1, -3+2, 0)   = (5, -1, 0)
    expect = {"gradient": (-3.0, 0.0, 8.0), "guided": (-1.0, 2.0, 0.0), "deconvnet": (5.0, -1.0, 0.0)}
    for rule, e in expect.items():
        g = A.gradient(m, x, 0, rule=rule)
        close(g, _uniform_image(e).expand_as(g), 1e-6)


def test_three_rules_by_hand_relu6():
    # Same net with ReLU6: h = (0, 0.5, 1.5) * 5 = (0, 2.5, 7.5) with W1 scaled by 5: unit 3 is saturated
    # (h >= 6), so its local derivative is 0 for backprop and guided; deconvnet ignores h.
    w1 = [[10, -5, 0], [5, 5, -20], [-5, 10, 0]]
    w2 = [[3, -2, 1], [0, 0, 0]]
    x = _uniform_image([0.5, 1.0, 0.25])
    m = TwoLayer(w1, w2, nn.ReLU6())
    # backprop  R_in = (0<h<6) R      = (0, -2, 0); dx = W1^T R_in = (-10, -10, 40)
    # guided    R_in = (0<h<6)(R>0) R = (0, 0, 0);  dx = 0
    # deconvnet R_in = (R>0) R        = (3, 0, 1);  dx = W1^T R_in = (30-5, -15+10, 0) = (25, -5, 0)
    expect = {"gradient": (-10.0, -10.0, 40.0), "guided": (0.0, 0.0, 0.0), "deconvnet": (25.0, -5.0, 0.0)}
    for rule, e in expect.items():
        g = A.gradient(m, x, 0, rule=rule)
        close(g, _uniform_image(e).expand_as(g), 1e-6)


# ---------------------------------------------------------------- gradients vs captum


def test_gradient_saliency_inputxgrad_equal_captum():
    m, x = tiny_model(), tiny_input(n=2)
    targets = [1, 3]
    g = A.gradient(m, x, targets)
    ref = captum_attr.Saliency(copy.deepcopy(m)).attribute(x.clone(), target=targets, abs=False)
    close(g, ref)
    assert float(g.abs().max()) > 0
    ref_abs = captum_attr.Saliency(copy.deepcopy(m)).attribute(x.clone(), target=targets, abs=True)
    close(A.saliency(m, x, targets), ref_abs.amax(1))
    ixg = captum_attr.InputXGradient(copy.deepcopy(m)).attribute(x.clone(), target=targets)
    close(A.input_x_gradient(m, x, targets), ixg)


def test_gradient_by_finite_differences():
    m, x = tiny_model(), tiny_input(size=(16, 20)).double()
    m = m.double()
    g = A.gradient(m, x, 2)
    rng = np.random.default_rng(0)
    for _ in range(5):
        c, i, j = int(rng.integers(3)), int(rng.integers(16)), int(rng.integers(20))
        e = torch.zeros_like(x)
        e[0, c, i, j] = 1e-6
        with torch.no_grad():
            fd = (m(x + e)[0, 2] - m(x - e)[0, 2]) / 2e-6
        assert abs(float(fd) - float(g[0, c, i, j])) < 1e-5


def test_class_names_and_callable_targets():
    m, x = tiny_model(), tiny_input()
    close(A.gradient(m, x, "class3"), A.gradient(m, x, 3))
    close(A.gradient(m, x, np.int64(3)), A.gradient(m, x, torch.tensor([3])))      # numpy and tensor indices
    close(A.gradient(m, x, A.Neuron("conv2", np.int64(2), (np.int64(1), 3))), A.gradient(m, x, A.Neuron("conv2", 2, (1, 3))))
    close(A.gradient(m, x, lambda logits: logits[:, 3] - logits[:, 1]),
          A.gradient(m, x, 3) - A.gradient(m, x, 1), 1e-5)


def test_smoothgrad_equals_captum_noise_tunnel_seeded():
    m, x = tiny_model(), tiny_input(n=2)
    ours = A.smoothgrad(m, x, [0, 4], samples=6, stdev=0.2, generator=torch.Generator().manual_seed(7),
                        batch_size=4)
    torch.manual_seed(7)
    nt = captum_attr.NoiseTunnel(captum_attr.Saliency(copy.deepcopy(m)))
    ref = nt.attribute(x.clone(), nt_type="smoothgrad", nt_samples=6, stdevs=0.2, target=[0, 4], abs=False)
    close(ours, ref, 1e-5)
    # and it is not the plain gradient
    assert float((ours - A.gradient(m, x, [0, 4])).abs().max()) > 1e-3


def test_neuron_gradient_equals_captum():
    m, x = tiny_model(), tiny_input(n=2)
    mm = copy.deepcopy(m)
    ours = A.gradient(m, x, A.Neuron("conv2", 4, (3, 7)))
    ref = captum_attr.NeuronGradient(mm, mm.net.features[3]).attribute(x.clone(), neuron_selector=(4, 3, 7))
    close(ours, ref)
    assert float(ours.abs().max()) > 0
    ours = A.gradient(m, x, A.Channel("conv2", 4))  # the whole channel: the mean of its map
    ref = captum_attr.NeuronGradient(mm, mm.net.features[3]).attribute(
        x.clone(), neuron_selector=lambda out: out[:, 4].mean((1, 2)))
    close(ours, ref)
    with capture(m, ["conv2"]) as rec, torch.no_grad():
        m(x)
    ch, cw = rec["conv2"].shape[-2:]
    centre = A.gradient(m, x, A.Neuron("conv2", 4))  # no position: the centre unit, as objectives.neuron
    close(centre, A.gradient(m, x, A.Neuron("conv2", 4, (ch // 2, cw // 2))))
    with pytest.raises(ValueError, match="has no position"):
        A.Channel("conv2", 4, (1, 1))


@pytest.mark.parametrize("rule", ["guided", "deconvnet"])
def test_guided_and_deconvnet_equal_captum_on_relu_models(rule, alexnet, resnet18):
    Cls = {"guided": captum_attr.GuidedBackprop, "deconvnet": captum_attr.Deconvolution}[rule]
    cases = [(relu_tiny(), tiny_input(n=2), [2, 0]),
             (alexnet, tiny_input(size=(64, 80)), 7),    # in-place ReLUs
             (resnet18, tiny_input(size=(48, 64)), 11)]  # a ReLU module reused twice per block
    for m, x, t in cases:
        ours = A.gradient(m, x, t, rule=rule)
        ref = Cls(copy.deepcopy(m)).attribute(x.clone(), target=t)
        close(ours, ref, 1e-5)
        assert float((ours - A.gradient(m, x, t)).abs().max()) > 1e-4 * float(ours.abs().max()), \
            f"{rule} equals the plain gradient on {m.name}"


@pytest.mark.parametrize("rule", ["guided", "deconvnet"])
def test_neuron_guided_equals_captum(rule):
    Cls = {"guided": captum_attr.NeuronGuidedBackprop, "deconvnet": captum_attr.NeuronDeconvolution}[rule]
    m, x = relu_tiny(), tiny_input(n=2)
    mm = copy.deepcopy(m)
    ours = A.gradient(m, x, A.Neuron("conv2", 1, (2, 5)), rule=rule)
    ref = Cls(mm, mm.net.features[3]).attribute(x.clone(), neuron_selector=(1, 2, 5))
    close(ours, ref)
    assert float(ours.abs().max()) > 0


def test_relu6_rule_on_tiny_and_embedded(effnet):
    """ReLU6 is handled (captum would leave it plain): the rules change the result on ReLU6-only models."""
    for m, x in [(tiny_model(), tiny_input()), (effnet, tiny_input(size=(64, 96)))]:
        plain = A.gradient(m, x, 3)
        for rule in ("guided", "deconvnet"):
            g = A.gradient(m, x, 3, rule=rule)
            assert float((g - plain).abs().max()) > 1e-3 * float(plain.abs().max()), (m.name, rule)


def test_guided_rule_on_relu6_matches_a_manual_backward():
    """Guided backprop through the tiny CNN (ReLU + maxpool + ReLU6) computed by hand, layer by layer."""
    m, x = tiny_model(), tiny_input()
    net = m.net
    z = (x - 0.5) / 0.5
    h1 = F.conv2d(z, net.features[0].weight, net.features[0].bias, padding=1)
    f1 = h1.clamp(min=0)
    p1, idx = F.max_pool2d(f1, 2, return_indices=True)
    h2 = F.conv2d(p1, net.features[3].weight, net.features[3].bias)
    n = h2.shape[2] * h2.shape[3]
    # backward by hand: d y_c / d f2 = W_fc[c] / n per unit
    r = net.fc.weight[2].view(1, 6, 1, 1).expand_as(h2) / n
    r = r * ((h2 > 0) & (h2 < 6)) * (r > 0)
    r = F.conv_transpose2d(r, net.features[3].weight)
    r = F.max_unpool2d(r, idx, 2, output_size=f1.shape[-2:])
    r = r * (h1 > 0) * (r > 0)
    r = F.conv_transpose2d(r, net.features[0].weight, padding=1) / 0.5
    close(A.guided_backprop(m, x, 2), r.detach(), 1e-5)


def test_functional_relu_models_raise():
    class Functional(nn.Module):  # torchvision's GoogLeNet used to be this (the course model now has modules)
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 3)

        def forward(self, x):
            return F.relu(self.c2(F.relu(self.c1(x)))).mean((2, 3))

    x = tiny_input(size=(64, 80))
    functional = Functional()
    with pytest.raises(ValueError, match=r"guided backprop cannot be applied to 'Functional': its forward\(\) makes "
                                         r"2 functional ReLU call\(s\) \(relu\)"):
        A.guided_backprop(functional, x, 0)
    assert count_hooks(functional) == 0
    assert A.functional_relus(functional, x) == ["relu", "relu"]

    class Mixed(nn.Module):  # one ReLU module, one functional relu: the dangerous case
        def __init__(self):
            super().__init__()
            self.c1, self.r1, self.c2 = nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3)

        def forward(self, x):
            return F.relu(self.c2(self.r1(self.c1(x)))).mean((2, 3))

    mixed = Mixed()
    assert A.functional_relus(mixed, x) == ["relu"]
    with pytest.raises(ValueError, match=r"deconvnet backprop cannot be applied to 'Mixed'.*1 functional ReLU"):
        A.deconvnet(mixed, x, 1)
    # plain gradients still work on such models
    assert A.gradient(mixed, x, 1).shape == x.shape


def test_functional_relus_empty_on_module_relu_models(alexnet, resnet18, effnet):
    for m, size in [(alexnet, (64, 80)), (resnet18, (48, 64)), (effnet, (48, 64)), (tiny_model(), (32, 40))]:
        assert A.functional_relus(m, tiny_input(size=size)) == [], m.name


def test_functional_relus_is_retraced_after_a_module_is_swapped():
    """The trace is cached per model, keyed on its modules: replacing one (as lessons do) re-traces."""

    class Act(nn.Module):
        def forward(self, x):
            return F.relu(x)

    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    x = tiny_input()
    m(x)
    assert A.functional_relus(m, x) == []
    m[1] = Act()  # now a functional relu the guided rules cannot reach
    assert A.functional_relus(m, x) == ["relu"]
    with pytest.raises(ValueError, match=r"1 functional ReLU call\(s\) \(relu\)"):
        A.guided_backprop(m, x, 0)
    m[1] = nn.ReLU()
    assert A.functional_relus(m, x) == []
    assert count_hooks(m) == 0


def test_silu_model_raises():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.SiLU(), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    x = tiny_input()
    m(x)
    with pytest.raises(ValueError, match="guided backprop is defined for ReLU and ReLU6 only, but the model also has SiLU"):
        A.guided_backprop(m, x, 0)


# ---------------------------------------------------------------- occlusion


def test_occlusion_equals_captum_for_every_class():
    m, x = tiny_model(), tiny_input(size=(30, 44))  # 30-7 and 44-7 are not multiples of the stride
    occ = A.occlusion(m, x, window=7, stride=(3, 4), progress=False, batch_size=5)
    assert occ.probs.shape == (len(occ.ys), len(occ.xs), 5)
    assert occ.ys == [0, 3, 6, 9, 12, 15, 18, 21, 24] and occ.xs[-1] == 40  # ceil(23/3)+1, last cut at the border
    base = torch.tensor(m.mean).view(1, 3, 1, 1)
    for c in range(5):
        ref = captum_attr.Occlusion(lambda z: m(z).softmax(-1)).attribute(
            x, sliding_window_shapes=(3, 7, 7), strides=(3, 3, 4), target=c, baselines=base)
        assert float((occ.attribution(c) - ref[0, 0]).abs().max()) <= 1e-5
        assert float((ref[0, 0] - ref[0, 2]).abs().max()) == 0  # the window covers all 3 channels


def test_occlusion_prob_map_by_hand_and_batch_size_invariance():
    m, x = tiny_model(), tiny_input()
    a = A.occlusion(m, x, window=(8, 10), stride=(8, 6), progress=False, batch_size=1)
    b = A.occlusion(m, x, window=(8, 10), stride=(8, 6), progress=False, batch_size=64)
    close(a.probs, b.probs, 1e-6)
    close(a.probs.sum(-1), torch.ones(a.probs.shape[:2]), 1e-5)
    i, j = 2, 3
    xo = x.clone()
    xo[:, :, a.ys[i]:a.ys[i] + 8, a.xs[j]:a.xs[j] + 10] = 0.5  # the tiny model's mean colour
    with torch.no_grad():
        p = m(xo).softmax(-1)[0]
        p0 = m(x).softmax(-1)[0]
    close(a.prob_map(4)[i, j], p[4])
    close(a.drop_map(4)[i, j], p0[4] - p[4])
    close(a.base, p0)


def test_occlusion_image_baseline():
    m, x = tiny_model(), tiny_input()
    blur = F.avg_pool2d(x, 5, 1, 2, count_include_pad=False)
    occ = A.occlusion(m, x, window=6, stride=3, baseline=blur, progress=False, batch_size=8)
    ref = captum_attr.Occlusion(lambda z: m(z).softmax(-1)).attribute(
        x, sliding_window_shapes=(3, 6, 6), strides=(3, 3, 3), target=1, baselines=blur)
    assert float((occ.attribution(1) - ref[0, 0]).abs().max()) <= 1e-5


def test_occlusion_errors():
    m, x = tiny_model(), tiny_input()
    with pytest.raises(ValueError, match=r"stride \(9, 9\) is larger than the window \(8, 8\)"):
        A.occlusion(m, x, window=8, stride=9)
    with pytest.raises(ValueError, match=r"window \(33, 33\) is larger than the 32x40 image"):
        A.occlusion(m, x, window=33, stride=4)
    with pytest.raises(ValueError, match="occlusion explains one image"):
        A.occlusion(m, tiny_input(n=2), window=8, stride=4)
    with pytest.raises(ValueError, match=r"baseline values must lie in \[0,1\]"):
        A.occlusion(m, x, window=8, stride=4, baseline=2.0)
    occ = A.occlusion(m, x, window=16, stride=16, progress=False, batch_size=2)
    with pytest.raises(IndexError, match=r"class index 5 is out of range: valid indices are 0..4"):
        occ.prob_map(5)


def test_best_batch_size_is_a_measured_candidate():
    m = tiny_model()
    b = A.best_batch_size(m, (32, 40), candidates=(1, 4, 16), budget_images=16)
    assert b in (1, 4, 16)
    assert A.best_batch_size(m, (32, 40), candidates=(1, 4, 16)) == b  # remembered


# ---------------------------------------------------------------- CAM and Grad-CAM


def test_cam_equals_gradcam_up_to_positive_scale(effnet, resnet18):
    cases = [(tiny_model(), tiny_input(n=2), "pool", "input", [0, 3]),
             (effnet, tiny_input(size=(96, 128)), "pool", "input", 17),
             (resnet18, tiny_input(size=(96, 128)), "layer4", "output", 17)]
    for m, x, layer, at, t in cases:
        c = A.cam(m, x, t)
        hw = c.shape[1] * c.shape[2]
        g = A.gradcam(m, x, t, layer, at=at, relu=False)
        close(g * hw, c, 1e-4)                      # signed: Grad-CAM = CAM / (h w)
        close(A.gradcam(m, x, t, layer, at=at), c.clamp(min=0) / hw, 1e-4)
        assert float(c.abs().max()) > 0


def test_cam_by_hand_on_tiny():
    m, x = tiny_model(), tiny_input()
    f = m.net.features(m.normalize(x))                    # (1, 6, h, w): what the GAP sees
    by_hand = (m.net.fc.weight[2].view(6, 1, 1) * f[0]).sum(0)
    close(A.cam(m, x, 2)[0], by_hand.detach())


def test_cam_refuses_other_heads(alexnet):
    with pytest.raises(ValueError, match=r"CAM needs a global-average-pooling layer followed by a linear classifier; "
                                         r"in 'alexnet' the pool layer 'net.classifier.5'"):
        A.cam(alexnet, tiny_input(size=(64, 80)), 0)


def test_gradcam_equals_captum_and_pytorch_grad_cam(alexnet, resnet18):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cases = [(tiny_model(), tiny_input(n=2), "conv2", [1, 4]),
             (alexnet, tiny_input(size=(96, 128)), "relu5", None),
             (resnet18, tiny_input(size=(96, 128)), "layer3", None)]
    for m, x, layer, t in cases:
        if m.name != "tiny":  # an untrained net: explain its own top class, whose map is rarely all zero
            with torch.no_grad():
                t = [int(m(x).argmax())]
        ours = A.gradcam(m, x, t, layer)
        mm = copy.deepcopy(m)
        dotted, _ = resolve_layer(mm, layer)
        mod = mm.get_submodule(dotted)
        ref = captum_attr.LayerGradCam(mm, mod).attribute(x.clone(), target=t, relu_attributions=True)
        close(ours, ref[:, 0].detach(), 1e-5)
        assert float(ours.max()) > 0, m.name
        mm = copy.deepcopy(m)
        with GradCAM(mm, [mm.get_submodule(dotted)]) as gcam:
            pg = gcam(x.clone(), targets=[ClassifierOutputTarget(c) for c in t])
        # pytorch-grad-cam min-max scales, resizes with OpenCV, then scales again: apply the same to ours
        mine = scale_cam_image(scale_cam_image(ours.numpy(), (x.shape[-1], x.shape[-2])))
        assert float(np.abs(pg - mine).max()) <= 1e-5


def test_gradcam_before_an_inplace_relu_sees_the_pre_relu_values(alexnet):
    """AlexNet's conv5 is followed by ReLU(inplace=True); Grad-CAM at conv5 must use conv5's own output."""
    x = tiny_input(size=(64, 80))
    ours = A.gradcam(alexnet, x, 7, "conv5", relu=False)
    mm = copy.deepcopy(alexnet)
    ref = captum_attr.LayerGradCam(mm, mm.net.features[10]).attribute(x.clone(), target=7)
    close(ours, ref[:, 0].detach(), 1e-5)
    # independently: conv5's output without in-place ops, and its gradient
    net = copy.deepcopy(alexnet)
    for mod in net.modules():
        if isinstance(mod, nn.ReLU):
            mod.inplace = False
    feats = net.net.features
    h = net.normalize(x)
    for k in range(11):
        h = feats[k](h)
    a = h.detach().requires_grad_(True)
    y = a
    for k in range(11, len(feats)):
        y = feats[k](y)
    y = net.net.classifier(torch.flatten(net.net.avgpool(y), 1))
    (g,) = torch.autograd.grad(y[0, 7], a)
    close(ours, (g.mean((2, 3), keepdim=True) * a).sum(1).detach(), 1e-5)
    assert float(a.detach().min()) < 0  # conv5 has negative values: they were not rectified in place


def test_guided_gradcam_equals_captum():
    m, x = relu_tiny(), tiny_input(n=2)
    mm = copy.deepcopy(m)
    ref = captum_attr.GuidedGradCam(mm, mm.net.features[3]).attribute(x.clone(), target=[3, 0], interpolate_mode="nearest")
    close(A.guided_gradcam(m, x, [3, 0], "conv2", mode="nearest"), ref, 1e-6)
    bil = A.guided_gradcam(m, x, [3, 0], "conv2")
    expect = A.guided_backprop(m, x, [3, 0]) * F.interpolate(A.gradcam(m, x, [3, 0], "conv2")[:, None], size=(32, 40),
                                                             mode="bilinear", align_corners=False)
    close(bil, expect)


# ---------------------------------------------------------------- sanity checks and faithfulness


def test_rank_correlation_equals_scipy_with_ties():
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(0)
    a = torch.randn(7, 9, generator=g)
    b = a + 0.8 * torch.randn(7, 9, generator=g)
    b[b < 0] = 0  # many ties at zero
    for absolute in (False, True):
        pa, pb = (a.abs(), b.abs()) if absolute else (a, b)
        ref = spearmanr(pa.flatten().numpy(), pb.flatten().numpy()).statistic
        assert abs(A.rank_correlation(a, b, absolute=absolute) - ref) < 1e-10
    assert A.rank_correlation(a, a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"maps must have the same shape, got \(7, 9\) and \(9, 7\)"):
        A.rank_correlation(a, a.T)


def test_cascading_randomization():
    m = tiny_model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    seen = []
    for name, rnd in A.cascading_randomization(m, ["fc", "conv2", "conv1"], seed=3):
        sd = rnd.state_dict()
        changed = sorted({k.rsplit(".", 1)[0] for k in sd if not torch.equal(sd[k], before[k])})
        seen.append((name, changed))
        # randomized weights keep the trained tensor's mean and std (roughly)
        w_new, w_old = sd["net.fc.weight"], before["net.fc.weight"]
        assert abs(float(w_new.std()) / float(w_old.std()) - 1) < 0.5
    assert seen == [("fc", ["net.fc"]), ("conv2", ["net.fc", "net.features.3"]),
                    ("conv1", ["net.fc", "net.features.0", "net.features.3"])]
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), f"the original model changed: {k}"
    again = dict(A.cascading_randomization(m, ["fc"], seed=3))["fc"]
    first = next(A.cascading_randomization(m, ["fc"], seed=3))[1]
    assert torch.equal(again.net.fc.weight, first.net.fc.weight)
    with pytest.raises(KeyError, match="unknown layer 'nope'"):
        next(A.cascading_randomization(m, ["fc", "nope"]))


def test_deletion_insertion_by_hand():
    from scipy.integrate import trapezoid  # numpy >= 2 has np.trapezoid; the project allows numpy 1.26

    m, x = tiny_model(), tiny_input()
    g = torch.Generator().manual_seed(1)
    attr = torch.rand(32, 40, generator=g)
    cur = A.deletion_insertion(m, x, 2, attr, steps=5, batch_size=4)
    order = np.argsort(-attr.numpy().ravel(), kind="stable")
    blurred = A._blur(x, 5.0)
    dels, ins = [], []
    for k in range(6):
        n = round(k * 32 * 40 / 5)
        mask = np.zeros(32 * 40, dtype=bool)
        mask[order[:n]] = True
        mk = torch.from_numpy(mask.reshape(1, 1, 32, 40))
        with torch.no_grad():
            dels.append(float(m(torch.where(mk, torch.full_like(x, 0.5), x)).softmax(-1)[0, 2]))
            ins.append(float(m(torch.where(mk, x, blurred)).softmax(-1)[0, 2]))
    close(cur.deletion, torch.tensor(dels), 1e-5)
    close(cur.insertion, torch.tensor(ins), 1e-5)
    fr = np.arange(6) / 5
    assert cur.deletion_auc == pytest.approx(trapezoid(dels, fr), abs=1e-5)
    assert cur.insertion_auc == pytest.approx(trapezoid(ins, fr), abs=1e-5)
    # the blur by hand: a normalized separable Gaussian, reflect padding
    r = 15
    k = torch.exp(-torch.arange(-r, r + 1.0) ** 2 / 50)
    k2 = torch.outer(k, k) / k.sum() ** 2
    xp = F.pad(x, (r, r, r, r), mode="reflect")
    close(blurred, F.conv2d(xp, k2.expand(3, 1, -1, -1).contiguous(), groups=3), 1e-5)


def test_blur_reflect_limits_on_small_images():
    x = tiny_input(size=(8, 12))
    y = A._blur(x, 5.0)  # kernel radius 15 > image: padding is cut at size-1 and the kernel renormalized
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1


# ---------------------------------------------------------------- errors before any work


def test_errors_name_the_bad_value_and_the_choices():
    m, x = tiny_model(), tiny_input()
    with pytest.raises(IndexError, match=r"class index 7 is out of range: valid indices are 0..4"):
        A.saliency(m, x, 7)
    with pytest.raises(KeyError, match="unknown ImageNet class 'dog'"):
        A.saliency(m, x, "dog")
    with pytest.raises(ValueError, match=r"got 3 class targets for a batch of 2 images"):
        A.gradient(m, tiny_input(n=2), [0, 1, 2])
    with pytest.raises(ValueError, match="unknown rule 'sideways': choose one of gradient, guided, deconvnet"):
        A.gradient(m, x, 0, rule="sideways")
    with pytest.raises(KeyError, match=r"unknown layer 'conv9'.*Closest valid names: conv2, conv1"):
        A.gradcam(m, x, 0, "conv9")
    with pytest.raises(IndexError, match=r"channel 6 is out of range: layer 'conv2' has channels 0..5"):
        A.gradient(m, x, A.Neuron("conv2", 6))
    with pytest.raises(IndexError, match=r"position \(14, 0\) is outside the 14x18 map of layer 'conv2': rows 0..13, columns 0..17"):
        A.gradient(m, x, A.Neuron("conv2", 0, (14, 0)))
    with pytest.raises(ValueError, match=r"Neuron.channel must be an integer >= 0, got -1"):
        A.Neuron("conv2", -1)
    with pytest.raises(ValueError, match=r"x must hold pixel values in \[0,1\].*got values in \[-0\.\d+"):
        A.saliency(m, x - 0.5, 0)
    with pytest.raises(ValueError, match=r"x must have shape \(N,3,H,W\) or \(3,H,W\), got \(1, 1, 32, 40\)"):
        A.saliency(m, x[:, :1], 0)
    with pytest.raises(ValueError, match="samples must be an integer >= 1, got 0"):
        A.smoothgrad(m, x, 0, samples=0)
    with pytest.raises(ValueError, match="at must be one of output, input, got 'middle'"):
        A.gradcam(m, x, 0, "conv2", at="middle")
    with pytest.raises(TypeError, match="cam explains class scores"):
        A.cam(m, x, A.Neuron("conv2", 0))
    with pytest.raises(ValueError, match=r"steps must be an integer >= 1, got 0"):
        A.deletion_insertion(m, x, 0, torch.rand(32, 40), steps=0)
    assert count_hooks(m) == 0


def test_layer_that_never_runs_raises():
    m, x = tiny_model(), tiny_input()
    m.net.unused = nn.Conv2d(6, 6, 1)
    with pytest.raises(LayerNotCalledError, match=r"layer\(s\) 'net.unused' \(net.unused\) never ran in forward\(\)"):
        A.gradcam(m, x, 0, "net.unused")
    assert count_hooks(m) == 0


def test_results_on_input_device_and_dtype_of_maps():
    m, x = tiny_model(), tiny_input()
    for f in (A.gradient, A.saliency, A.guided_backprop, A.deconvnet, A.input_x_gradient):
        out = f(m, x, 1)
        assert out.device == x.device and out.dtype == torch.float32
    assert A.cam(m, x, 1).shape == (1, 14, 18)
    assert A.gradcam(m, x, 1, "conv1").shape == (1, 32, 40)
