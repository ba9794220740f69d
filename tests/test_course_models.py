"""Every lesson on every course model (issue 11): the portable stage names, ``course_model``'s
switch (``CNNVIZ_MODEL``, ``CNNVIZ_WEIGHTS``, the offline fallback), ``trained``, CAM's fallback
to Grad-CAM, and GoogLeNet's ReLU modules. The lessons themselves run on untrained AlexNet and
VGG16 in tests/test_lessons_on_lecture_models.py."""
from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

from cnnviz_helpers import MODEL_NAMES, attribution as A, course_model, load_model, trained
from cnnviz_helpers.aliases import STAGES
from cnnviz_helpers.hooks import capture
from cnnviz_helpers.layers import resolve_layer


@pytest.fixture(scope="module", params=MODEL_NAMES)
def untrained(request):
    torch.manual_seed(0)
    return load_model(request.param, weights=None, device="cpu")


def test_every_stage_name_resolves_and_the_stages_go_deeper(untrained):
    model = untrained
    maps = [s for s in STAGES if s not in ("embedding", "logits")]
    for s in STAGES:
        resolve_layer(model, s)
    x = torch.rand(1, 3, model.input_size, model.input_size)
    with capture(model, list(STAGES)) as rec, torch.no_grad():
        logits = model(x)
    sides = [rec[s].shape[-1] for s in maps]
    assert all(rec[s].dim() == 4 for s in maps), {s: tuple(rec[s].shape) for s in maps}
    assert sides == sorted(sides, reverse=True), f"{model.name}: stage sides {dict(zip(maps, sides))} do not shrink"
    assert sides[0] > sides[-1]
    assert torch.allclose(rec["logits"].flatten(1), logits), "the 'logits' stage is not the model's output"
    assert rec["embedding"].flatten(1).shape[1] >= 256


def test_the_stage_names_are_the_lecture_layers():
    alex = load_model("alexnet", weights=None, device="cpu")
    assert alex.aliases["last_conv"] == alex.aliases["relu5"] and alex.aliases["embedding"] == alex.aliases["relu7"]
    vgg = load_model("vgg16", weights=None, device="cpu")
    assert vgg.aliases["last_conv"] == vgg.aliases["relu5_3"] and vgg.aliases["early_mid"] == vgg.aliases["relu3_3"]
    vgg19 = load_model("vgg19", weights=None, device="cpu")
    assert vgg19.aliases["early_mid"] == vgg19.aliases["relu3_4"]
    lite = load_model(weights=None, device="cpu")
    assert [lite.aliases[s] for s in ("early", "mid", "late", "embedding")] == \
        [lite.aliases[b] for b in ("block2", "block4", "block6", "pool")]


def test_course_model_reads_the_switch(monkeypatch, capsys):
    monkeypatch.setenv("CNNVIZ_MODEL", "alexnet")
    monkeypatch.setenv("CNNVIZ_WEIGHTS", "untrained")
    m = course_model(device="cpu")
    assert m.name == "alexnet" and not m.pretrained
    assert "untrained" in capsys.readouterr().out
    monkeypatch.delenv("CNNVIZ_MODEL")
    monkeypatch.delenv("CNNVIZ_WEIGHTS")
    m = course_model(device="cpu")
    assert m.name == "efficientnet_lite0" and m.pretrained


def test_an_unknown_model_stops_with_the_valid_names(monkeypatch):
    monkeypatch.setenv("CNNVIZ_MODEL", "vgg61")
    with pytest.raises(ValueError, match="CNNVIZ_MODEL=vgg61") as e:
        course_model()
    for name in MODEL_NAMES:
        assert name in str(e.value)
    monkeypatch.setenv("CNNVIZ_MODEL", "alexnet")
    monkeypatch.setenv("CNNVIZ_WEIGHTS", "random")
    with pytest.raises(ValueError, match="pretrained, untrained"):
        course_model()


def test_missing_weights_say_how_to_get_them_and_go_on_with_lite0(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("CNNVIZ_MODEL", "vgg16")
    monkeypatch.delenv("CNNVIZ_WEIGHTS", raising=False)

    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    m = course_model(device="cpu")
    assert m.name == "efficientnet_lite0" and m.pretrained
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    line = out[0]
    for part in ("vgg16-397923af.pth", str(tmp_path), "python -m cnnviz_helpers weights vgg16", "efficientnet_lite0"):
        assert part in line, (part, line)


def test_trained_says_why_a_behaviour_check_is_skipped(capsys):
    alex = load_model("alexnet", weights=None, device="cpu")
    assert trained(alex) is False
    assert "alexnet is untrained" in capsys.readouterr().out
    lite = load_model(device="cpu")
    assert trained(lite) is True and trained(lite, "efficientnet_lite0") is True
    assert capsys.readouterr().out == ""
    assert trained(lite, "vgg16") is False
    assert "fact of vgg16" in capsys.readouterr().out
    with pytest.raises(ValueError, match="vgg61"):
        trained(lite, "vgg61")


def test_class_map_is_cam_where_the_head_allows_and_grad_cam_otherwise(capsys):
    torch.manual_seed(0)
    x = torch.rand(1, 3, 224, 224)
    lite = load_model(weights=None, device="cpu")
    maps, method = A.class_map(lite, x, 3)
    assert method == "CAM" and torch.allclose(maps, A.cam(lite, x, 3))
    assert capsys.readouterr().out == ""
    alex = load_model("alexnet", weights=None, device="cpu")
    maps, method = A.class_map(alex, x, 3)
    assert method == "Grad-CAM at last_conv"
    assert torch.allclose(maps, A.gradcam(alex, x, 3, "relu5"))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "alexnet" in out[0] and "Grad-CAM" in out[0] and "Traceback" not in out[0]


def test_googlenet_has_relu_modules_and_the_same_forward():
    torch.manual_seed(0)
    ours = load_model("googlenet", weights=None, device="cpu")
    ref = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
    ref.load_state_dict(ours.net.state_dict())
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(ours.normalize(x)), atol=1e-5)
    g = A.guided_backprop(ours, x[:1], 3)
    assert g.shape == (1, 3, 224, 224) and torch.isfinite(g).all()
    plain = A.gradient(ours, x[:1], 3)
    cos = torch.nn.functional.cosine_similarity(g.flatten(), plain.flatten(), dim=0)
    assert cos < 0.99, f"guided backprop is the plain gradient on googlenet (cosine {float(cos):.4f})"
