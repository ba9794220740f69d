"""Dataset-wide passes (lessons 01, 13): streaming top-k, activations, patches, photo decoding, the cache.

Every result is compared with an independent computation: a brute-force
ranking written with Python's ``sorted``, the tiny CNN's layers called one by
one without hooks, crops cut pixel by pixel, ``CourseModel.preprocess``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnviz_helpers import dataset as D
from cnnviz_helpers.dataset import (CacheWarning, PhotoSet, StreamingTopK, TensorImages, activations,
                                    model_fingerprint, top_activations)
from cnnviz_helpers.layers import receptive_field
from support import tiny_input, tiny_model

SHARED = Path(os.environ.get("CNNVIZ_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(autouse=True)
def runs_cache(tmp_path, monkeypatch):
    """Every test gets its own empty results cache (never the user's)."""
    d = tmp_path / "runs"
    monkeypatch.setenv(D.CACHE_ENV, str(d))
    return d


def brute_force_topk(act: np.ndarray, k: int):
    """act (N,C,H,W): per unit, images sorted by (max desc, image id asc); position = first max, row-major."""
    n, c, h, w = act.shape
    out_v, out_i, out_r, out_c = [], [], [], []
    for ch in range(c):
        per_image = []
        for i in range(n):
            m = act[i, ch]
            best, pos = -np.inf, None
            for r in range(h):
                for q in range(w):
                    if m[r, q] > best:
                        best, pos = m[r, q], (r, q)
            per_image.append((best, i, pos))
        ranked = sorted(per_image, key=lambda t: (-t[0], t[1]))[:k]
        out_v.append([t[0] for t in ranked])
        out_i.append([t[1] for t in ranked])
        out_r.append([t[2][0] for t in ranked])
        out_c.append([t[2][1] for t in ranked])
    return np.array(out_v), np.array(out_i), np.array(out_r), np.array(out_c)


# ---------------------------------------------------------------- StreamingTopK

@pytest.mark.parametrize("batches", [[13], [1] * 13, [5, 3, 4, 1]])
def test_streaming_topk_equals_a_full_sort(batches):
    g = torch.Generator().manual_seed(0)
    act = torch.randint(0, 6, (sum(batches), 4, 3, 5), generator=g).float()  # many ties, on purpose
    acc = StreamingTopK(channels=4, k=5)
    s = 0
    for b in batches:
        acc.update(act[s:s + b], s)
        s += b
    v, i, r, c = brute_force_topk(act.numpy(), 5)
    assert acc.map_size == (3, 5) and acc.seen == 13
    np.testing.assert_array_equal(acc.values.numpy(), v)
    np.testing.assert_array_equal(acc.images.numpy(), i)
    np.testing.assert_array_equal(acc.rows.numpy(), r)
    np.testing.assert_array_equal(acc.cols.numpy(), c)


def test_streaming_topk_keeps_o_k_memory_and_fewer_images_than_k():
    acc = StreamingTopK(channels=3, k=4)
    acc.update(torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]), 0)  # (B,C) outputs: fc layers
    assert acc.values.shape == (3, 2)  # only two images so far
    for s in range(2, 50, 6):
        acc.update(torch.rand(6, 3), s)
        assert acc.values.shape == (3, 4) and acc.map_size == (1, 1)


def test_streaming_topk_errors():
    with pytest.raises(ValueError, match=r"k must be a positive integer, got 0"):
        StreamingTopK(3, 0)
    acc = StreamingTopK(3, 2)
    with pytest.raises(ValueError, match=r"expected activations \(B,3,H,W\) or \(B,3\), got \(2, 4, 5, 5\)"):
        acc.update(torch.zeros(2, 4, 5, 5), 0)
    acc.update(torch.zeros(2, 3, 5, 5), 0)
    with pytest.raises(ValueError, match=r"activation maps changed size from \(5, 5\) to \(4, 5\)"):
        acc.update(torch.zeros(2, 3, 4, 5), 2)


# ---------------------------------------------------------------- top_activations on the tiny CNN

def _tiny_layers(m, x):
    """The tiny CNN's layers called one by one, no hooks: an independent forward."""
    with torch.no_grad():
        z = m.normalize(x)
        a1 = m.net.features[0](z)
        a2 = m.net.features[4](m.net.features[3](m.net.features[2](torch.relu(a1))))
        logits = m.net.fc(a2.mean((2, 3)))
    return {"conv1": a1, "relu2": a2, "fc": logits}


def test_top_activations_equal_brute_force_and_patches_are_the_receptive_fields():
    m = tiny_model()
    x = tiny_input(n=11, size=(32, 40))
    top = top_activations(m, ["conv1", "relu2", "fc"], x, k=4, batch_size=3, progress=False)
    ref = _tiny_layers(m, x)
    for name in ("conv1", "relu2"):
        v, i, r, c = brute_force_topk(ref[name].numpy(), 4)
        t = top[name]
        np.testing.assert_allclose(t.values.numpy(), v, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(t.images.numpy(), i)
        np.testing.assert_array_equal(t.rows.numpy(), r)
        np.testing.assert_array_equal(t.cols.numpy(), c)
        assert t.rf == receptive_field(m, name, (32, 40)) and t.input_size == (32, 40)
    v, i, _, _ = brute_force_topk(ref["fc"].numpy()[:, :, None, None], 4)
    np.testing.assert_array_equal(top["fc"].images.numpy(), i)
    assert top["fc"].rf is None and top["fc"].box(2, 1) == (0, 0, 31, 39)
    assert list(top) == ["conv1", "relu2", "fc"]

    # relu2: rf size 8, stride 2, start -1 (by hand: conv3 pad1, pool2, conv3)
    t = top["relu2"]
    patches = t.patches(5, x, pad=True, fill=0.25)
    clipped = t.patches(5, x, pad=False)
    for rank in range(4):
        img = x[int(t.images[5, rank])]
        top_, left = -1 + 2 * int(t.rows[5, rank]), -1 + 2 * int(t.cols[5, rank])
        p = patches[rank]
        assert p.shape == (3, 8, 8)
        for a in range(8):
            for b in range(8):
                y, xx = top_ + a, left + b
                inside = 0 <= y < 32 and 0 <= xx < 40
                expect = img[:, y, xx] if inside else torch.full((3,), 0.25)
                assert torch.equal(p[:, a, b], expect), (rank, a, b)
        t0, l0 = max(top_, 0), max(left, 0)
        b0, r0 = min(top_ + 7, 31), min(left + 7, 39)
        assert torch.equal(clipped[rank], img[:, t0:b0 + 1, l0:r0 + 1])


def test_top_activations_bad_arguments_are_refused_before_any_work(monkeypatch):
    m, x = tiny_model(), tiny_input(n=3)

    def no_pass(*a, **k):
        raise AssertionError("the pass started")

    monkeypatch.setattr(D.passes, "_stream", no_pass)
    with pytest.raises(KeyError, match=r"unknown layer 'conv9'.*Closest valid names: conv2, conv1"):
        top_activations(m, ["conv1", "conv9"], x)
    with pytest.raises(ValueError, match=r"k must be an integer in 1\.\.3, got 4"):
        top_activations(m, "conv1", x, k=4)
    with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1, got 0"):
        top_activations(m, "conv1", x, k=2, batch_size=0)
    with pytest.raises(TypeError, match=r"photos must be a PhotoSet, a TensorImages or a \(N,3,H,W\) float tensor"):
        top_activations(m, "conv1", [x])
    lo = f"{float(x.min()) * 255:.3g}"
    with pytest.raises(ValueError, match=rf"images must lie in \[0,1\], got values in \[{lo}, 255\]"):
        top_activations(m, "conv1", x * 255)


def test_patch_and_unit_errors():
    m, x = tiny_model(), tiny_input(n=3)
    t = top_activations(m, "conv2", x, k=2, progress=False)["conv2"]
    with pytest.raises(IndexError, match=r"unit 6 is out of range: layer 'conv2' has units 0\.\.5"):
        t.patches(6, x)
    with pytest.raises(ValueError, match=r"these photos are not the set that layer 'conv2' was ranked on"):
        t.patches(0, tiny_input(seed=5, n=3))
    with pytest.raises(IndexError, match=r"rank 2 is out of range: 0\.\.1"):
        t.box(0, 2)


# ---------------------------------------------------------------- activations

def test_activations_equal_an_independent_forward():
    m = tiny_model()
    x = tiny_input(n=7, size=(32, 40))
    ref = _tiny_layers(m, x)
    full = activations(m, ["conv1", "relu2", "fc"], x, batch_size=2, progress=False)
    torch.testing.assert_close(full["conv1"], ref["conv1"])
    torch.testing.assert_close(full["relu2"], ref["relu2"])
    torch.testing.assert_close(full["fc"], ref["fc"])
    mx = activations(m, "relu2", x, reduction="max", progress=False)["relu2"]
    mean = activations(m, "relu2", x, reduction="mean", dtype=torch.float16, progress=False)["relu2"]
    torch.testing.assert_close(mx, ref["relu2"].amax((2, 3)))
    assert mean.dtype == torch.float16
    torch.testing.assert_close(mean.float(), ref["relu2"].mean((2, 3)), atol=2e-3, rtol=2e-3)


def test_in_place_relu_does_not_change_the_recorded_conv_output():
    """The tiny CNN's conv1 is followed by ReLU(inplace=True): the pass must see conv1's signed output."""
    m = tiny_model()
    x = tiny_input(n=3)
    a = activations(m, "conv1", x, progress=False)["conv1"]
    assert float(a.min()) < 0
    torch.testing.assert_close(a, _tiny_layers(m, x)["conv1"])
    assert m.net.features[1].inplace  # restored


def test_other_in_place_changes_are_refused():
    from torch import nn

    class AddInPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)

        def forward(self, x):
            y = self.conv(x)
            y += 1.0  # modifies the hooked output, like ResNet's `out += identity`
            return y

    with pytest.raises(RuntimeError, match=r"the output of layer 'conv' \(conv\) is modified in place later"):
        activations(AddInPlace(), "conv", tiny_input(n=2), cache=False, progress=False)


def test_activations_errors(monkeypatch):
    m, x = tiny_model(), tiny_input(n=2)
    with pytest.raises(ValueError, match=r"unknown reduction 'median': choose one of None, 'max', 'mean'"):
        activations(m, "conv1", x, reduction="median")
    with pytest.deprecated_call(match="reduction="):  # the old name still works, with a warning
        old = activations(m, "conv1", x, reduce="max", cache=False, progress=False)["conv1"]
    torch.testing.assert_close(old, activations(m, "conv1", x, reduction="max", cache=False, progress=False)["conv1"])
    with pytest.raises(TypeError, match="not both"):
        activations(m, "conv1", x, reduce="max", reduction="max")
    with pytest.raises(TypeError, match=r"dtype must be a floating torch.dtype"):
        activations(m, "conv1", x, dtype=torch.int64)
    monkeypatch.setattr(D.passes, "_MAX_BYTES", 1000)
    with pytest.raises(ValueError, match=r"the activations of 2 photos would take .* GiB \(conv1 \(4, 32, 40\) "
                                         r"per photo\), above the 4 GiB limit"):
        activations(m, "conv1", x)


# ---------------------------------------------------------------- the cache

def test_second_pass_is_served_from_the_cache(runs_cache, monkeypatch):
    m, x = tiny_model(), tiny_input(n=6)
    first = top_activations(m, ["conv1", "conv2"], x, k=3, progress=False)
    acts = activations(m, "conv2", x, reduction="max", progress=False)
    files = sorted(p.name for p in runs_cache.rglob("*.pt"))
    assert len(files) == 3 and all(f.startswith("tiny-net.features.") for f in files)

    def no_pass(*a, **k):
        raise AssertionError("the pass ran again")

    monkeypatch.setattr(D.passes, "_stream", no_pass)
    calls = []
    h = m.net.register_forward_pre_hook(lambda mod, inp: calls.append(1))
    try:  # a cached call runs no forward pass at all (not even to trace receptive fields)
        again = top_activations(m, ["conv2", "conv1"], x, k=3, progress=False)
        cached_acts = activations(m, "conv2", x, reduction="max", progress=False)["conv2"]
    finally:
        h.remove()
    assert calls == []
    for n in ("conv1", "conv2"):
        assert torch.equal(again[n].values, first[n].values) and torch.equal(again[n].images, first[n].images)
        assert torch.equal(again[n].rows, first[n].rows) and again[n].rf == first[n].rf
        assert isinstance(again[n].rf.size, tuple) and again[n].rf.extent == first[n].rf.extent
    assert torch.equal(cached_acts, acts["conv2"])
    # another k, other photos, other weights: not served from the cache
    for call in (lambda: top_activations(m, "conv1", x, k=2, progress=False),
                 lambda: top_activations(m, "conv1", tiny_input(seed=9, n=6), k=3, progress=False),
                 lambda: top_activations(tiny_model(seed=3), "conv1", x, k=3, progress=False),
                 lambda: activations(m, "conv2", x, reduction="mean", progress=False)):
        with pytest.raises(AssertionError, match="the pass ran again"):
            call()


def test_cache_false_writes_nothing(runs_cache):
    m, x = tiny_model(), tiny_input(n=3)
    top_activations(m, "conv1", x, k=2, cache=False, progress=False)
    activations(m, "conv1", x, cache=False, progress=False)
    assert not runs_cache.exists()


def test_corrupt_cache_file_is_recomputed_with_a_warning(runs_cache):
    m, x = tiny_model(), tiny_input(n=4)
    first = top_activations(m, "conv2", x, k=2, progress=False)["conv2"]
    (f,) = list(runs_cache.rglob("*.pt"))
    f.write_bytes(b"not a torch file")
    with pytest.warns(CacheWarning, match=r"(?s)ignoring unreadable cache file .*recomputing"):
        again = top_activations(m, "conv2", x, k=2, progress=False)["conv2"]
    assert torch.equal(again.values, first.values)
    assert top_activations(m, "conv2", x, k=2, progress=False)["conv2"].values.shape == (6, 2)  # rewritten


def test_unwritable_cache_warns_and_still_returns(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv(D.CACHE_ENV, str(blocker / "runs"))  # a folder inside a file: cannot be created
    m, x = tiny_model(), tiny_input(n=3)
    with pytest.warns(CacheWarning, match=r"cannot write the results cache .* Set CNNVIZ_CACHE to a writable folder"):
        t = top_activations(m, "conv1", x, k=2, progress=False)["conv1"]
    assert t.values.shape == (4, 2)


def test_fingerprint_tracks_weights_not_object_identity():
    a, b = tiny_model(seed=0), tiny_model(seed=0)
    assert model_fingerprint(a) == model_fingerprint(b)
    with torch.no_grad():
        b.net.fc.bias[0] += 1e-6
    assert model_fingerprint(a) != model_fingerprint(b)


def test_runs_dir_default_and_env(monkeypatch, tmp_path):
    monkeypatch.setenv(D.CACHE_ENV, str(tmp_path / "x"))
    assert D.runs_dir() == (tmp_path / "x").resolve() and not (tmp_path / "x").exists()
    monkeypatch.delenv(D.CACHE_ENV)
    assert D.runs_dir().name == "cnnviz-runs"


# ---------------------------------------------------------------- PhotoSet (real course photos)

needs_photos = pytest.mark.skipif(not (SHARED / "imagenet-samples" / "n02123045_tabby.JPEG").exists(),
                                  reason=f"the course photos are not at {SHARED} (set CNNVIZ_DATA)")


@needs_photos
def test_photoset_matches_preprocess_and_reuses_the_decoded_cache(monkeypatch, runs_cache):
    from cnnviz_helpers import load_model

    monkeypatch.setenv("CNNVIZ_DATA", str(SHARED))
    model = load_model("efficientnet_lite0", weights=None, device="cpu")
    photos = PhotoSet(["tabby", "ostrich", 999], size=96, resize=110)
    assert photos.classes == [281, 9, 999] and photos.labels.tolist() == [281, 9, 999]
    assert not photos.decoded and "not decoded yet" in repr(photos)
    seen = [s for s, b in photos.batches(2, workers=2)]
    assert seen == [0, 2] and photos.decoded
    inline = PhotoSet(["tabby", "ostrich", 999], size=96, resize=110)
    batches = list(inline.batches(2, workers=0, cache=False))   # decoded in this thread, nothing written
    assert [s for s, _ in batches] == [0, 2] and torch.equal(inline.images, photos.images)
    imgs = photos.images
    assert imgs.shape == (3, 3, 96, 96) and imgs.dtype == torch.uint8
    for i, c in enumerate([281, 9, 999]):
        from cnnviz_helpers.images import center_crop, load_image, resize_short_side

        ref = center_crop(resize_short_side(load_image(photos.paths[i]), 110), 96)[0]
        assert float((imgs[i].float() / 255 - ref).abs().max()) <= 0.5 / 255 + 1e-6
        x, label = photos[i]
        assert label == c and x.shape == (3, 96, 96)
    ref224 = model.preprocess(photos.paths[0])  # the default resize matches the model's preprocessing
    p224 = PhotoSet(["tabby"])
    assert float((p224.image(0) - ref224).abs().max()) <= 0.5 / 255 + 1e-6

    def no_decode(self, i):
        raise AssertionError("decoded again")

    monkeypatch.setattr(PhotoSet, "decode", no_decode)
    again = PhotoSet(["tabby", "ostrich", 999], size=96, resize=110)  # a new object: from the disk cache
    assert torch.equal(again.images, imgs)
    with pytest.raises(AssertionError, match="decoded again"):
        PhotoSet(["tabby", "ostrich", 999], size=64).images


@needs_photos
def test_decode_all_threads_give_the_same_photos_and_write_the_cache_file(monkeypatch, runs_cache):
    monkeypatch.setenv("CNNVIZ_DATA", str(SHARED))
    classes = ["tabby", "ostrich", 999, 0, 500]
    threaded = PhotoSet(classes, size=64)
    assert not threaded.cache_file.exists()
    x = threaded.decode_all(workers=3, cache=False)                  # nothing written
    assert not threaded.cache_file.exists() and x.shape == (5, 3, 64, 64)
    inline = PhotoSet(classes, size=64)
    assert torch.equal(inline.decode_all(workers=0), x)
    assert inline.cache_file.exists() and inline.cache_file.parent == runs_cache / "photos"
    assert torch.equal(x[3], inline.decode(3))
    with pytest.raises(ValueError, match=r"workers must be an integer >= 0, got -1"):
        PhotoSet(classes, size=64).decode_all(workers=-1)


@needs_photos
def test_photoset_errors(monkeypatch):
    monkeypatch.setenv("CNNVIZ_DATA", str(SHARED))
    with pytest.raises(ValueError, match=r"size must be an integer >= 8 \(pixels\), got 4"):
        PhotoSet([1], size=4)
    with pytest.raises(ValueError, match=r"resize must be an integer >= size \(64\), got 32"):
        PhotoSet([1], size=64, resize=32)
    with pytest.raises(ValueError, match=r"classes lists the same class twice: \[281\]"):
        PhotoSet(["tabby", 281])
    with pytest.raises(ValueError, match=r"classes is empty"):
        PhotoSet([])
    with pytest.raises(KeyError, match=r"unknown ImageNet class 'tabbby'"):
        PhotoSet(["tabbby"])
    with pytest.raises(IndexError, match=r"photo index 1 is out of range: this set has 1 photos \(0\.\.0\)"):
        PhotoSet([3]).image(1)


@needs_photos
def test_top_activations_on_photos_decodes_while_the_model_runs(monkeypatch, runs_cache):
    """On a PhotoSet not decoded yet, the pass decodes (threads) and ranks in one go; the result equals
    a ranking of the decoded tensor given as TensorImages."""
    monkeypatch.setenv("CNNVIZ_DATA", str(SHARED))
    m = tiny_model()
    photos = PhotoSet([1, 2, 3, 4, 5], size=40)
    t = top_activations(m, "conv2", photos, k=3, batch_size=2, workers=2, progress=False)["conv2"]
    assert photos.decoded
    ref = top_activations(m, "conv2", photos.images.float() / 255, k=3, batch_size=2, cache=False,
                          progress=False)["conv2"]
    assert torch.equal(t.values, ref.values) and torch.equal(t.images, ref.images)
    assert t.patches(0, photos)[0].shape == (3, 8, 8)


def test_thumbnails_in_chunks_equal_one_resize():
    import torch.nn.functional as F

    from cnnviz_helpers.dataset import TensorImages

    x = torch.rand(7, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    whole = F.interpolate(x, size=(8, 8), mode="bilinear", antialias=True).clamp(0, 1)
    assert torch.allclose(TensorImages(x).thumbnails(8, chunk=3), whole, atol=1e-6)
    with pytest.raises(ValueError, match="size"):
        TensorImages(x).thumbnails(0)


# ---------------------------------------------------------------- relevance beside activation (issue 15)

def test_relevance_equals_the_closed_form_of_a_linear_head_and_its_top_k_is_the_tables():
    """relu2 is followed by global average pooling and fc: dS_y/dA_c = w_yc / (HW), so R_c = w_yc * mean_ij A_c."""
    m, x = tiny_model(), tiny_input(n=11, size=(32, 40))
    top = top_activations(m, ["conv1", "relu2"], x, k=4, batch_size=3, relevance=3, relevance_layers="relu2",
                          progress=False)
    a = _tiny_layers(m, x)["relu2"]                                          # (N, C, h, w), no hooks
    w = m.net.fc.weight.detach()[3]                                          # (C,)
    t = top["relu2"]
    r_hand = (w[None, :] * a.mean((2, 3))).numpy()
    np.testing.assert_allclose(t.relevance.table.numpy(), r_hand, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t.table.numpy(), a.amax((2, 3)).numpy(), rtol=1e-6)
    assert t.target == 3 and t.relevance.ranking == "relevance" and t.ranked("relevance") is t.relevance
    # the top-k by relevance is the top-k of the full table (stable sort: earlier photo first on ties)
    order = np.argsort(-r_hand, axis=0, kind="stable")[:4].T                  # (C, 4)
    np.testing.assert_array_equal(t.relevance.images.numpy(), order)
    np.testing.assert_allclose(t.relevance.values.numpy(), np.take_along_axis(r_hand.T, order, 1), rtol=1e-5)
    # its positions: the largest contribution A * w/(HW), i.e. the largest A when w > 0, the smallest when w < 0
    h, wd = a.shape[-2:]
    for c in range(a.shape[1]):
        for r in range(4):
            contrib = (a[order[c, r], c] * w[c] / (h * wd)).flatten()
            assert int(t.relevance.rows[c, r]) * wd + int(t.relevance.cols[c, r]) == int(contrib.argmax())
    # the activation ranking is what it is without relevance; conv1 has none
    plain = top_activations(m, ["conv1", "relu2"], x, k=4, batch_size=3, progress=False)
    for n in ("conv1", "relu2"):
        assert torch.equal(plain[n].values, top[n].values) and torch.equal(plain[n].images, top[n].images)
        assert plain[n].relevance is None and plain[n].table is None
    assert top["conv1"].relevance is None
    with pytest.raises(ValueError, match=r"layer 'conv1' was ranked without relevance"):
        top["conv1"].ranked("relevance")
    with pytest.raises(ValueError, match=r"unknown ranking 'size': choose one of activation, relevance"):
        t.ranked("size")


def _relevance_by_autograd(m, x, layer, classes):
    """R (N, C) one photo at a time: torch.autograd.grad of that photo's logit w.r.t. the layer's output."""
    from cnnviz_helpers.hooks import capture

    out = []
    for i in range(x.shape[0]):
        xi = x[i:i + 1].clone().requires_grad_(True)
        with capture(m, [layer]) as rec:
            s = m(xi)[0, classes[i]]
            (g,) = torch.autograd.grad(s, rec[layer])
            out.append((rec[layer] * g).flatten(2).sum(2)[0].detach())
    return torch.stack(out)


def test_relevance_equals_autograd_one_photo_at_a_time_through_an_in_place_relu():
    """conv1 is followed by ReLU(inplace=True), and the graph of the pass starts at conv1: a backward
    through the whole net, for a class given by name; conv2 (deeper) in the same graph."""
    m, x = tiny_model(), tiny_input(n=7, size=(32, 40))
    top = top_activations(m, ["conv1", "conv2"], x, k=3, batch_size=2, relevance="class1", cache=False,
                          progress=False)
    for n in ("conv1", "conv2"):
        torch.testing.assert_close(top[n].relevance.table, _relevance_by_autograd(m, x, n, [1] * 7),
                                   rtol=1e-4, atol=1e-6)
    assert top["conv1"].target == 1 and m.net.features[1].inplace


@needs_photos
def test_relevance_of_each_photos_own_label(monkeypatch, runs_cache):
    monkeypatch.setenv("CNNVIZ_DATA", str(SHARED))
    m = tiny_model()                                                       # 5 classes: photos of classes 1..4
    photos = PhotoSet([1, 2, 3, 4], size=40)
    t = top_activations(m, "conv2", photos, k=2, batch_size=3, relevance="label", progress=False)["conv2"]
    x = photos.images.float() / 255
    torch.testing.assert_close(t.relevance.table, _relevance_by_autograd(m, x, "conv2", photos.classes),
                               rtol=1e-4, atol=1e-6)
    assert t.target == "label"
    with pytest.raises(ValueError, match=r"relevance class index 999 is out of range: the model has 5 outputs"):
        top_activations(m, "conv2", PhotoSet([999], size=40), k=1, relevance="label", cache=False, progress=False)


def test_relevance_is_cached_apart_and_old_results_keep_their_files(runs_cache, monkeypatch):
    m, x = tiny_model(), tiny_input(n=6)
    plain = top_activations(m, ["conv1", "conv2"], x, k=3, progress=False)
    plain_files = {p.name for p in runs_cache.rglob("*.pt")}
    rel = top_activations(m, ["conv1", "conv2"], x, k=3, relevance=0, relevance_layers=["conv2"], progress=False)
    new_files = {p.name for p in runs_cache.rglob("*.pt")} - plain_files
    assert len(new_files) == 1 and "-rel-" in new_files.pop()                # conv1 came from the plain file

    def no_pass(*a, **k):
        raise AssertionError("the pass ran again")

    monkeypatch.setattr(D.passes, "_stream", no_pass)
    again = top_activations(m, ["conv1", "conv2"], x, k=3, relevance=0, relevance_layers=["conv2"], progress=False)
    assert torch.equal(again["conv2"].relevance.table, rel["conv2"].relevance.table)
    assert torch.equal(again["conv2"].relevance.images, rel["conv2"].relevance.images)
    assert torch.equal(top_activations(m, "conv2", x, k=3, progress=False)["conv2"].values, plain["conv2"].values)
    for call in (lambda: top_activations(m, "conv2", x, k=3, relevance=1, progress=False),
                 lambda: top_activations(m, "conv2", x, k=3, relevance="class1", progress=False),   # same as 1
                 lambda: top_activations(m, "conv1", x, k=3, relevance=0, progress=False)):
        with pytest.raises(AssertionError, match="the pass ran again"):
            call()


def test_bad_relevance_values_are_refused_before_any_work(monkeypatch):
    m, x = tiny_model(), tiny_input(n=3)

    def no_pass(*a, **k):
        raise AssertionError("the pass started")

    monkeypatch.setattr(D.passes, "_stream", no_pass)
    with pytest.raises(ValueError, match=r"relevance='label' needs photos with labels \(a PhotoSet.*Valid: None, "
                                         r"'label'"):
        top_activations(m, "conv1", x, k=2, relevance="label")
    with pytest.raises(ValueError, match=r"relevance class index 5 is out of range: valid indices are 0\.\.4"):
        top_activations(m, "conv1", x, k=2, relevance=5)
    with pytest.raises(ValueError, match=r"unknown relevance 'tabby': not a class of tiny .*valid: None, 'label'"):
        top_activations(m, "conv1", x, k=2, relevance="tabby")
    with pytest.raises(TypeError, match=r"relevance must be None, 'label' .* got True"):
        top_activations(m, "conv1", x, k=2, relevance=True)
    with pytest.raises(ValueError, match=r"relevance_layers is given but relevance is None"):
        top_activations(m, "conv1", x, k=2, relevance_layers="conv1")
    with pytest.raises(ValueError, match=r"relevance_layers \['conv2'\] are not among the ranked layers: conv1"):
        top_activations(m, "conv1", x, k=2, relevance=0, relevance_layers="conv2")
    with pytest.raises(KeyError, match=r"unknown layer 'conv9'"):
        top_activations(m, "conv1", x, k=2, relevance=0, relevance_layers="conv9")


@pytest.mark.filterwarnings("ignore:An input array is constant")
def test_spearman_equals_scipy_with_ties_and_constant_columns():
    stats = pytest.importorskip("scipy.stats")
    g = np.random.default_rng(0)
    a = g.integers(0, 5, (40, 6)).astype(float)                             # many ties, on purpose
    b = np.c_[g.normal(size=(40, 4)), np.round(g.normal(size=(40, 1))), np.ones((40, 1))]   # last column: constant
    a[:, 3] = 2.0                                                           # a constant column on the other side
    got = D.spearman(a, b)
    want = np.array([stats.spearmanr(a[:, j], b[:, j]).statistic for j in range(6)])
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    assert np.isnan(got[3]) and np.isnan(got[5]) and np.isfinite(got[[0, 1, 2, 4]]).all()
    np.testing.assert_array_equal(D.rankdata(np.array([[3.0, 0], [1, 0], [3, 1], [2, 0]])),   # by hand: ties averaged
                                  [[3.5, 2], [1, 2], [3.5, 4], [2, 2]])                        # down each column
    assert abs(D.spearman(torch.tensor(a[:, 0]), torch.tensor(b[:, 0])) - want[0]) < 1e-12   # tensors, vectors
    assert D.spearman(np.arange(5.0), -np.arange(5.0) ** 3) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match=r"two tables of the same shape"):
        D.spearman(a, b[:, :2])


def test_streaming_topk_of_given_scores_and_positions():
    acc = StreamingTopK(channels=2, k=2)
    acc.update_scores(torch.tensor([[1.0, -1.0], [3.0, 0.0]]), torch.tensor([[4, 0], [5, 1]]), 0, (2, 3))
    acc.update_scores(torch.tensor([[2.0, 7.0]]), torch.tensor([[2, 3]]), 2, (2, 3))
    assert acc.images.tolist() == [[1, 2], [2, 1]] and acc.values.tolist() == [[3.0, 2.0], [7.0, 0.0]]
    assert acc.rows.tolist() == [[1, 0], [1, 0]] and acc.cols.tolist() == [[2, 2], [0, 1]]
    with pytest.raises(ValueError, match=r"activation maps changed size from \(2, 3\) to \(3, 3\)"):
        acc.update_scores(torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.long), 3, (3, 3))


def test_capture_grad_from_starts_the_graph_at_the_first_of_its_layers():
    """What the relevance pass relies on: nothing recorded before the graph's start, every later layer in it."""
    from cnnviz_helpers.hooks import capture

    m, x = tiny_model(), tiny_input(n=2)
    with capture(m, ["conv1", "conv2", "relu2"], grad_from=["relu2", "conv2"]) as rec:
        out = m(x)
        assert not rec["conv1"].requires_grad and rec["conv2"].is_leaf and rec["conv2"].requires_grad
        assert not rec["relu2"].is_leaf                                  # downstream of conv2: in its graph
        g2, g3 = torch.autograd.grad(out[:, 1].sum(), [rec["conv2"], rec["relu2"]])
    w = m.net.fc.weight.detach()[1]
    torch.testing.assert_close(g3, (w[None, :, None, None] / (g3.shape[2] * g3.shape[3])).expand_as(g3))
    torch.testing.assert_close(g2, g3 * ((rec["conv2"] > 0) & (rec["conv2"] < 6)).float())   # ReLU6's gate
    assert all(p.grad is None for p in m.parameters())
    # under no_grad (the pass): grad mode on from conv2 only, and off again after rec.run
    with capture(m, ["conv1", "conv2", "relu2"], grad_from="conv2") as rec, torch.no_grad():
        out = rec.run(x)
        assert not torch.is_grad_enabled() and out.requires_grad and not rec["conv1"].requires_grad
        with torch.enable_grad():
            (g2_again,) = torch.autograd.grad(out[:, 1].sum(), [rec["conv2"]])
    torch.testing.assert_close(g2_again, g2)
    assert torch.is_grad_enabled()
    with pytest.raises(ValueError, match=r"grad_from names \['pool'\], which are not recorded layers"):
        with capture(m, ["conv1"], grad_from="pool"):
            pass
