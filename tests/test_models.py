"""Models: names, lecture aliases, preprocessing, devices and clear errors for missing weights."""
from __future__ import annotations

import urllib.error

import pytest
import torch
from torch import nn

from cnnviz_helpers import layers
from cnnviz_helpers.models import (EMBEDDED_MODELS, LECTURE_MODELS, MODEL_NAMES, WeightsUnavailableError,
                                   imagenet_categories, load_model, weights_file)


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet_lite0", device="cpu")


def test_unknown_model_names_the_value_and_choices():
    with pytest.raises(ValueError, match=r"unknown model 'alexnett'\. Did you mean 'alexnet'\?.*Valid names: "
                                         r"efficientnet_lite0, efficientnet_lite2, alexnet"):
        load_model("alexnett")
    with pytest.raises(TypeError, match="model name must be a string"):
        load_model(3)
    with pytest.raises(ValueError, match=r"weights must be 'DEFAULT' \(pretrained\) or None"):
        load_model("alexnet", weights="IMAGENET1K_V2")


def test_embedded_model_is_pretrained_and_normalizes_with_half(lite0):
    assert lite0.name == "efficientnet_lite0" and lite0.pretrained and not lite0.training
    assert lite0.mean == (0.5, 0.5, 0.5) and lite0.std == (0.5, 0.5, 0.5)
    assert lite0.input_size == 224 and lite0.device.type == "cpu"
    x = torch.full((1, 3, 8, 8), 0.5)
    assert torch.equal(lite0.normalize(x), torch.zeros_like(x))
    assert torch.allclose(lite0.denormalize(lite0.normalize(x * 0.3)), x * 0.3)
    assert len(lite0.categories) == 1000 and lite0.categories[281] == "tabby"
    # the forward pass is net(normalize(x)), nothing else
    y = torch.rand(1, 3, 64, 80)
    with torch.no_grad():
        assert torch.allclose(lite0(y), lite0.net((y - 0.5) / 0.5))


def test_embedded_aliases(lite0):
    a = lite0.aliases
    assert a["stem"] == "net._conv_stem" and a["head"] == "net._conv_head" and a["fc"] == "net._fc"
    assert [a[f"block{k}"] for k in range(1, 8)] == [f"net._blocks.{i}" for i in (0, 2, 4, 7, 10, 14, 15)]
    for alias, dotted in a.items():
        assert layers.resolve_layer(lite0, alias) == (dotted, lite0.get_submodule(dotted))


def test_lite2_loads():
    m = load_model("efficientnet_lite2", device="cpu")
    assert m.input_size == 260 and m.pretrained
    with torch.no_grad():
        assert m(torch.rand(1, 3, 64, 64)).shape == (1, 1000)


EXPECTED = {
    "alexnet": {"conv1": (nn.Conv2d, 64), "conv2": (nn.Conv2d, 192), "conv3": (nn.Conv2d, 384),
                "conv4": (nn.Conv2d, 256), "conv5": (nn.Conv2d, 256), "pool5": (nn.MaxPool2d, None),
                "fc6": (nn.Linear, 4096), "fc7": (nn.Linear, 4096), "fc8": (nn.Linear, 1000)},
    "vgg16": {"conv1_1": (nn.Conv2d, 64), "conv5": (nn.Conv2d, 512), "conv5_3": (nn.Conv2d, 512),
              "pool5": (nn.MaxPool2d, None), "fc6": (nn.Linear, 4096), "fc7": (nn.Linear, 4096), "fc8": (nn.Linear, 1000)},
    "vgg19": {"conv5_4": (nn.Conv2d, 512), "conv5": (nn.Conv2d, 512), "fc6": (nn.Linear, 4096), "fc8": (nn.Linear, 1000)},
    "googlenet": {"conv1": (nn.Module, None), "inception4e": (nn.Module, None), "inception5b": (nn.Module, None),
                  "fc": (nn.Linear, 1000)},
    "resnet18": {"conv1": (nn.Conv2d, 64), "layer4": (nn.Sequential, None), "fc": (nn.Linear, 1000)},
    "squeezenet1_1": {"conv1": (nn.Conv2d, 64), "fire9": (nn.Module, None), "conv10": (nn.Conv2d, 1000)},
}


@pytest.mark.parametrize("name", LECTURE_MODELS)
def test_lecture_models_untrained_build_with_aliases(name):
    m = load_model(name, weights=None, device="cpu")
    assert not m.pretrained and not m.training
    assert len(m.categories) == 1000 and m.categories == imagenet_categories()
    assert m.mean == pytest.approx((0.485, 0.456, 0.406)) and m.std == pytest.approx((0.229, 0.224, 0.225))
    for alias, (kind, width) in EXPECTED[name].items():
        dotted, mod = layers.resolve_layer(m, alias)
        assert isinstance(mod, kind), f"{name}.{alias} -> {dotted} is {type(mod).__name__}"
        if width is not None:
            assert (mod.out_features if isinstance(mod, nn.Linear) else mod.out_channels) == width
    with torch.no_grad():
        assert m(torch.rand(1, 3, 96, 112)).shape == (1, 1000)
    layers.resolve_layer(m, m.penultimate)
    layers.resolve_layer(m, m.classifier)


def test_missing_weights_offline_names_file_folder_and_alternative(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url, dst, *a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    url, path = weights_file("alexnet")
    assert path.parent == tmp_path / "hub" / "checkpoints" and path.name.startswith("alexnet-")
    with pytest.raises(WeightsUnavailableError) as ei:
        load_model("alexnet")
    msg = str(ei.value)
    assert path.name in msg and str(path.parent) in msg and "efficientnet_lite0" in msg and "weights=None" in msg
    assert not path.exists()


def test_cached_weights_load_without_network(tmp_path, monkeypatch):
    """A weights file already in torch's cache is used as is (here: a state dict we saved, hash check off)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url, path = weights_file("squeezenet1_1")
    path.parent.mkdir(parents=True)
    ref = load_model("squeezenet1_1", weights=None, device="cpu")
    torch.save(ref.net.state_dict(), path)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("tried to download"))
    real = torch.hub.load_state_dict_from_url
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda u, **k: real(u, **{**k, "check_hash": False}))
    m = load_model("squeezenet1_1", device="cpu")
    assert m.pretrained
    for (n, p), (_, q) in zip(m.net.state_dict().items(), ref.net.state_dict().items()):
        assert torch.equal(p, q), n


def test_corrupted_cached_weights_are_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url, path = weights_file("resnet18")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match=r"resnet18-.*\.pth' of 'resnet18' is corrupted or truncated .*: delete it"):
        load_model("resnet18")


def test_predict_and_labels(lite0):
    with pytest.raises(IndexError, match=r"class index 1000 is out of range: valid indices are 0\.\.999"):
        lite0.label(1000)
    assert lite0.class_index("Golden Retriever") == 207
    top = lite0.predict(torch.rand(2, 3, 64, 64), top=3)
    assert len(top) == 2 and len(top[0]) == 3
    assert top[0][0][2] >= top[0][1][2] >= top[0][2][2]


def test_all_names_listed():
    assert set(MODEL_NAMES) == set(EMBEDDED_MODELS) | set(LECTURE_MODELS)
