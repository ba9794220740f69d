"""The incremental occlusion path (``stages``): crop geometry against brute force, chains against
the models' own forward, and incremental occlusion against the full computation and captum."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnviz_helpers import attribution as A
from cnnviz_helpers import data_dir, load_model, sample_path
from cnnviz_helpers.stages import ChainUnavailable, chain_of, dirty_span
from support import tiny_input, tiny_model


def reads(k, s, p, n_in, n_out):
    """Brute force: the input units each output unit of a (k, s, p) convolution reads."""
    return [{u * s - p + t for t in range(k)} & set(range(n_in)) for u in range(n_out)]


@pytest.mark.parametrize("k,s,p", [(1, 1, 0), (3, 1, 1), (3, 2, 0), (3, 2, 1), (5, 2, 2), (11, 4, 2), (2, 2, 0), (5, 1, 2)])
def test_dirty_span_against_brute_force(k, s, p):
    for n_in in (13, 16, 27):
        n_out = (n_in + 2 * p - k) // s + 1
        r = reads(k, s, p, n_in, n_out)
        for lo, hi in itertools.combinations_with_replacement(range(n_in), 2):
            changed = {u for u in range(n_out) if r[u] & set(range(lo, hi + 1))}
            plan = dirty_span((k, s, p), lo, hi, n_in, n_out)
            if not changed:
                assert plan is None
                continue
            (c0, c1), (a, b), o = plan
            assert set(range(a, b + 1)) == changed  # exactly the changed outputs
            assert c0 % s == 0 and 0 <= c0 <= c1 < n_in  # on the grid, inside the map
            for u in range(a, b + 1):  # everything they read is in the crop
                assert r[u] <= set(range(c0, c1 + 1))
                assert u - a + o == u - c0 // s  # crop output index <-> full-map index


def conv_chain_equals_crop(k, s, p):
    """A conv run on dirty_span's crop gives the full map's values (the padding never reaches them)."""
    conv = nn.Conv2d(2, 3, k, s, p)
    x = torch.randn(1, 2, 23, 19)
    full = conv(x)
    for lo, hi in [(0, 3), (5, 9), (18, 22), (0, 22)]:
        (c0, c1), (a, b), o = dirty_span((k, s, p), lo, hi, 23, full.shape[-2])
        (d0, d1), (e, f), oe = dirty_span((k, s, p), lo % 19, min(18, hi), 19, full.shape[-1])
        part = conv(x[..., c0:c1 + 1, d0:d1 + 1])[..., o:o + b - a + 1, oe:oe + f - e + 1]
        torch.testing.assert_close(part, full[..., a:b + 1, e:f + 1])


@pytest.mark.parametrize("k,s,p", [(3, 1, 1), (3, 2, 1), (5, 2, 2), (11, 4, 2), (3, 2, 0)])
def test_crop_gives_the_full_maps_values(k, s, p):
    with torch.no_grad():
        conv_chain_equals_crop(k, s, p)


def test_chain_of_tiny_reproduces_forward_and_geometry():
    m, x = tiny_model(), tiny_input()
    ch = chain_of(m, x)
    names = [st.name for st in ch.local]
    assert names == ["normalize", "net.features.0", "net.features.1", "net.features.2", "net.features.3", "net.features.4"]
    # conv 3x3 pad 1; ReLU; maxpool 2; conv 3x3 (valid); ReLU6
    assert [st.rows for st in ch.local] == [(1, 1, 0), (3, 1, 1), (1, 1, 0), (2, 2, 0), (3, 1, 0), (1, 1, 0)]
    assert ch.tail_names == ["net.pool", "net.flatten", "net.fc"]
    with torch.no_grad():
        torch.testing.assert_close(ch(x), m(x))


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "resnet18", "squeezenet1_1"])
def test_chain_of_lecture_models(name):
    torch.manual_seed(0)
    m = load_model(name, weights=None)
    x = torch.rand(1, 3, 112, 128)
    ch = chain_of(m, x)
    with torch.no_grad():
        torch.testing.assert_close(ch(x), m(x), atol=1e-5, rtol=1e-4)
    # adaptive pooling resizes whatever it gets: never cropped
    for st in ch.local:
        mod = dict(m.named_modules()).get(st.name)
        if isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            assert st.rows is None and st.cols is None


def test_chain_of_refuses_unknown_or_inconsistent_models():
    with pytest.raises(ChainUnavailable, match="GoogLeNet is not a structure the incremental path knows"):
        chain_of(load_model("googlenet", weights=None), torch.rand(1, 3, 64, 64))

    class Doubled(nn.Module):  # looks like features + pool + fc, but forward does more
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return 2 * self.fc(torch.flatten(self.pool(self.features(x)), 1))

    with pytest.raises(ChainUnavailable, match="do not reproduce its forward"):
        chain_of(Doubled(), torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"chain_of needs an image batch \(N,3,H,W\), got \(3, 32, 40\)"):
        chain_of(tiny_model(), tiny_input()[0])


def test_incremental_occlusion_equals_full_on_tiny():
    m, x = tiny_model(), tiny_input(size=(30, 44))
    for win, st in [(7, (3, 4)), ((8, 10), (8, 6)), (3, 1), (30, 4)]:
        full = A.occlusion(m, x, window=win, stride=st, method="full", progress=False)
        inc = A.occlusion(m, x, window=win, stride=st, method="incremental", batch_size=5, progress=False)
        assert (full.method, inc.method) == ("full", "incremental")
        torch.testing.assert_close(inc.probs, full.probs, atol=1e-6, rtol=0)
    blur = F.avg_pool2d(x, 5, 1, 2, count_include_pad=False)  # an image baseline too
    torch.testing.assert_close(A.occlusion(m, x, window=6, stride=3, baseline=blur, progress=False).probs,
                               A.occlusion(m, x, window=6, stride=3, baseline=blur, method="full", progress=False).probs,
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["alexnet", "resnet18", "squeezenet1_1"])
def test_incremental_occlusion_equals_full_on_lecture_models(name):
    torch.manual_seed(0)
    m = load_model(name, weights=None)
    x = torch.rand(1, 3, 128, 112)
    full = A.occlusion(m, x, window=40, stride=36, method="full", batch_size=4, progress=False)
    inc = A.occlusion(m, x, window=40, stride=36, progress=False)
    assert inc.method == "incremental"
    # untrained nets: near-uniform probabilities, so compare the logits' effect relatively
    torch.testing.assert_close(inc.probs, full.probs, atol=1e-7, rtol=1e-4)


@pytest.mark.skipif(not (data_dir() / "imagenet-samples" / "n02123045_tabby.JPEG").exists(),
                    reason="the course photos are not in the cache (set CNNVIZ_DATA)")
def test_incremental_occlusion_on_lite0_equals_captum():
    captum_attr = pytest.importorskip("captum.attr")
    m = load_model()
    x = m.preprocess(sample_path("tabby"))
    inc = A.occlusion(m, x, window=56, stride=42, progress=False)
    assert inc.method == "incremental"
    c = inc.top_classes(1)[0]
    ref = captum_attr.Occlusion(lambda z: m(z).softmax(-1)).attribute(
        x, sliding_window_shapes=(3, 56, 56), strides=(3, 42, 42), target=c,
        baselines=torch.tensor(m.mean).view(1, 3, 1, 1))
    assert float((inc.attribution(c) - ref[0, 0]).abs().max()) <= 1e-5


def test_occlusion_method_errors():
    m, x = tiny_model(), tiny_input()
    with pytest.raises(ValueError, match="unknown occlusion method 'fast': choose one of auto, incremental, full"):
        A.occlusion(m, x, window=8, stride=4, method="fast")
    g = load_model("googlenet", weights=None)
    with pytest.raises(ChainUnavailable, match="GoogLeNet"):
        A.occlusion(g, torch.rand(1, 3, 64, 64), window=32, stride=32, method="incremental")
    assert A.occlusion(g, torch.rand(1, 3, 64, 64), window=32, stride=32, progress=False).method == "full"


class ConvBN(nn.Module):
    """conv-BN-ReLU twice, a BN that does not follow a conv, GAP, linear: 2 of 3 BNs can fold."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(),
            nn.Conv2d(5, 6, 3, stride=2), nn.BatchNorm2d(6), nn.ReLU(), nn.BatchNorm2d(6))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def trained_convbn(seed=0):
    torch.manual_seed(seed)
    m = ConvBN()
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        for bn in (m.features[1], m.features[4], m.features[6]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return m.eval()


def test_folded_copy_folds_conv_bn_pairs_by_hand():
    m, x = trained_convbn(), torch.rand(1, 3, 20, 18)
    hook_calls = []
    h = m.features[0].register_forward_hook(lambda *a: hook_calls.append(1))
    try:
        f, n = A_stages().folded_copy(m, x)
        m(x)
        assert hook_calls == [1, 1]  # once for the tracing pass, once just now
        assert n == 2 and f is not m
        assert isinstance(f.features[1], nn.Identity) and isinstance(f.features[4], nn.Identity)
        assert isinstance(f.features[6], nn.BatchNorm2d)  # follows a ReLU: not foldable
        conv, bn = m.features[0], m.features[1]  # w' = w g / sqrt(v + eps), b' = (b - mu) g / sqrt(v + eps) + beta
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        torch.testing.assert_close(f.features[0].weight, conv.weight * scale.view(-1, 1, 1, 1))
        torch.testing.assert_close(f.features[0].bias, (conv.bias - bn.running_mean) * scale + bn.bias)
        with torch.no_grad():
            out = f(x)
            assert hook_calls == [1, 1]  # the copy carries no hooks
            torch.testing.assert_close(out, m(x), atol=1e-5, rtol=1e-5)
        assert all(not p.requires_grad and p.grad is None for p in f.parameters())
    finally:
        h.remove()


def test_folded_copy_is_remembered_until_a_parameter_changes():
    m, x = trained_convbn(), torch.rand(1, 3, 20, 18)
    f1, _ = A_stages().folded_copy(m, x)
    f2, _ = A_stages().folded_copy(m, x)
    assert f2 is f1
    with torch.no_grad():
        m.features[1].running_var.mul_(2)  # in place, as a training step would
    f3, _ = A_stages().folded_copy(m, x)
    assert f3 is not f1
    with torch.no_grad():
        torch.testing.assert_close(f3(x), m(x), atol=1e-5, rtol=1e-5)
    assert A_stages().folded_copy(m, torch.rand(1, 3, 24, 24))[0] is not f3  # another input size


def test_folded_lite0_chain_and_occlusion():
    m = load_model()
    x = torch.rand(1, 3, 224, 224)
    ch = chain_of(m, x, fold=True)
    assert ch.folded == 49  # stem, head, and 2-3 conv+BN pairs in each of the 16 blocks
    with torch.no_grad():
        torch.testing.assert_close(ch(x), m(x), atol=1e-4, rtol=1e-4)
    assert chain_of(m, x).folded == 0
    a = A.occlusion(m, x, window=64, stride=64, method="full", progress=False)
    b = A.occlusion(m, x, window=64, stride=64, progress=False)
    torch.testing.assert_close(b.probs, a.probs, atol=1e-5, rtol=0)


def A_stages():
    from cnnviz_helpers import stages

    return stages
