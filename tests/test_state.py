"""Every public helper that takes a model leaves it exactly as found: no hook left, the same
``training`` flags, ``requires_grad``, ``.grad``, ReLU ``inplace`` flags and parameters,
after success, after a bad argument, after an error inside forward() and after Ctrl-C.

To join: add a ``Case`` to ``CASES`` for each new public helper (the meta-test
``test_every_public_helper_has_a_case`` fails until you do).
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Callable

import pytest
import torch

import cnnviz_helpers as ch
from cnnviz_helpers import hooks, layers
from support import Boom, assert_untouched, raising_in, tiny_input, tiny_model


@dataclass
class Case:
    run: Callable  # run(model, x): a normal call
    bad: Callable | None = None  # bad(model, x): a call with a bad argument
    bad_exc: type = ValueError
    forward: bool = True  # does run() execute the model's forward()?


def _capture(m, x, layers=("conv1", "relu2")):
    with hooks.capture(m, list(layers), gradients=True) as rec:
        x = x.clone().requires_grad_(True)
        y = m(x)
        torch.autograd.grad(y[:, 0].sum(), x)
    return rec


def _frozen(m, x):
    with hooks.frozen(m):
        m(x)


def _relu_rule(rule):
    def run(m, x):
        with hooks.relu_rule(m, rule):
            x = x.clone().requires_grad_(True)
            torch.autograd.grad(m(x)[:, 1].sum(), x)
    return run


# Modules whose public functions taking a ``model`` first must each have a case.
STATE_MODULES = ["cnnviz_helpers.hooks", "cnnviz_helpers.layers", "cnnviz_helpers.receptive", "cnnviz_helpers.models",
                 "cnnviz_helpers.objectives", "cnnviz_helpers.optimize"]

CASES: dict[str, Case] = {
    # hooks
    "capture": Case(_capture, bad=lambda m, x: _capture(m, x, ("conv1", "nope")), bad_exc=KeyError),
    "frozen": Case(_frozen, bad=lambda m, x: hooks.frozen(object()).__enter__(), bad_exc=TypeError),
    "relu_rule": Case(_relu_rule("guided"), bad=lambda m, x: hooks.relu_rule(m, "sideways").__enter__()),
    "relu_rule/deconvnet": Case(_relu_rule("deconvnet")),
    "count_hooks": Case(lambda m, x: hooks.count_hooks(m), forward=False),
    # layers
    "list_layers": Case(lambda m, x: layers.list_layers(m, (32, 40)), bad=lambda m, x: layers.list_layers(m, (2, 2)),
                        bad_exc=RuntimeError),
    "resolve_layer": Case(lambda m, x: layers.resolve_layer(m, "conv2"), bad=lambda m, x: layers.resolve_layer(m, "x"),
                          bad_exc=KeyError, forward=False),
    "resolve_layers": Case(lambda m, x: layers.resolve_layers(m, ["conv2", "fc"]),
                           bad=lambda m, x: layers.resolve_layers(m, []), forward=False),
    "layer_names": Case(lambda m, x: layers.layer_names(m), forward=False),
    "receptive_field": Case(lambda m, x: layers.receptive_field(m, "conv2", (32, 40)),
                            bad=lambda m, x: layers.receptive_field(m, "fc", (32, 40))),
    # models
    "CourseModel.predict": Case(lambda m, x: m.predict(x, top=3)),
    # objectives / optimize (issue 4): optimize returns on Ctrl-C, _optimize re-raises to show it was seen
    "features": Case(lambda m, x: _objectives().features(m, x, ["conv1", "fc"]),
                     bad=lambda m, x: _objectives().features(m, x, ["conv1", "nope"]), bad_exc=KeyError),
    "optimize": Case(lambda m, x: _optimize(m, x), bad=lambda m, x: _optimize(m, x, layer="nope"), bad_exc=KeyError),
    "optimize/logits": Case(lambda m, x: _optimize(m, x, layer=None)),
    "fgsm": Case(lambda m, x: _opt().fgsm(m, x, eps=2 / 255, label=1),
                 bad=lambda m, x: _opt().fgsm(m, x, eps=2 / 255, label=1, target=2)),
    "pgd": Case(lambda m, x: _opt().pgd(m, x, eps=4 / 255, steps=3, target=2, random_start=True),
                bad=lambda m, x: _opt().pgd(m, x, eps=0, target=2)),
}


def _objectives():
    from cnnviz_helpers import objectives

    return objectives


def _opt():
    from cnnviz_helpers import optimize

    return optimize


def _optimize(m, x, layer="conv2"):
    from cnnviz_helpers import params, transforms

    o = _objectives()
    objective = (o.channel(layer, 1) if layer else o.class_logit(2)) - 0.1 * o.tv()
    res = _opt().optimize(m, objective, params.from_image(x), transforms=transforms.jitter(2), steps=3,
                          progress=False)
    if res.interrupted:
        raise KeyboardInterrupt  # optimize swallowed Ctrl-C and returned the image; the state must still be clean
    return res


# ---- attribution (issue 3, lessons 04-07)
def _attr():
    from cnnviz_helpers import attribution

    return attribution


def _cascade(m, layers=("fc", "conv2")):
    for _ in _attr().cascading_randomization(m, list(layers), seed=1):
        pass


STATE_MODULES.append("cnnviz_helpers.attribution")
CASES.update({
    "class_scores": Case(lambda m, x: _attr().class_scores(m, x), bad=lambda m, x: _attr().class_scores(m, x[:, :2])),
    "gradient": Case(lambda m, x: _attr().gradient(m, x, 1), bad=lambda m, x: _attr().gradient(m, x, 9),
                     bad_exc=IndexError),
    "gradient/neuron": Case(lambda m, x: _attr().gradient(m, x, _attr().Neuron("conv2", 2, (1, 3))),
                            bad=lambda m, x: _attr().gradient(m, x, _attr().Neuron("conv2", 99)), bad_exc=IndexError),
    "saliency": Case(lambda m, x: _attr().saliency(m, x, "class2"), bad=lambda m, x: _attr().saliency(m, x, "dog"),
                     bad_exc=KeyError),
    "input_x_gradient": Case(lambda m, x: _attr().input_x_gradient(m, x, 0),
                             bad=lambda m, x: _attr().input_x_gradient(m, x - 1, 0)),
    "smoothgrad": Case(lambda m, x: _attr().smoothgrad(m, x, 1, samples=3, batch_size=2),
                       bad=lambda m, x: _attr().smoothgrad(m, x, 1, samples=0)),
    "guided_backprop": Case(lambda m, x: _attr().guided_backprop(m, x, 3),
                            bad=lambda m, x: _attr().guided_backprop(m, x, [1, 2])),
    "deconvnet": Case(lambda m, x: _attr().deconvnet(m, x, 3), bad=lambda m, x: _attr().gradient(m, x, 3, rule="up")),
    "occlusion": Case(lambda m, x: _attr().occlusion(m, x, window=16, stride=8, batch_size=3, progress=False),
                      bad=lambda m, x: _attr().occlusion(m, x, window=8, stride=9)),
    "occlusion/incremental": Case(lambda m, x: _attr().occlusion(m, x, window=16, stride=8, method="incremental",
                                                                 progress=False),
                                  bad=lambda m, x: _attr().occlusion(m, x, window=8, stride=4, method="fast")),
    "best_batch_size": Case(lambda m, x: _attr().best_batch_size(m, (32, 40), candidates=(1, 2), budget_images=2)),
    "cam": Case(lambda m, x: _attr().cam(m, x, 2), bad=lambda m, x: _attr().cam(m, x, 2, pool="conv2")),
    "integrated_gradients": Case(lambda m, x: _attr().integrated_gradients(m, x, 1, steps=3),
                                 bad=lambda m, x: _attr().integrated_gradients(m, x, 1, steps=0)),
    "completeness_gap": Case(lambda m, x: _attr().completeness_gap(m, x, 1, torch.zeros_like(x)),
                             bad=lambda m, x: _attr().completeness_gap(m, x, 1, torch.zeros(1))),
    "class_map": Case(lambda m, x: _attr().class_map(m, x, 2, layer="conv2"),
                      bad=lambda m, x: _attr().class_map(m, x, 99, layer="conv2"), bad_exc=IndexError),
    "gradcam": Case(lambda m, x: _attr().gradcam(m, x, 2, "conv2"), bad=lambda m, x: _attr().gradcam(m, x, 2, "nope"),
                    bad_exc=KeyError),
    "gradcam/input": Case(lambda m, x: _attr().gradcam(m, x, 2, "pool", at="input")),
    "guided_gradcam": Case(lambda m, x: _attr().guided_gradcam(m, x, 2, "conv2"),
                           bad=lambda m, x: _attr().guided_gradcam(m, x, 2, "conv2", mode="cubic")),
    "functional_relus": Case(lambda m, x: _attr().functional_relus(m, x),
                             bad=lambda m, x: _attr().functional_relus(m, x[:, :, :2])),
    "cascading_randomization": Case(lambda m, x: _cascade(m), bad=lambda m, x: _cascade(m, ("fc", "nope")), bad_exc=KeyError,
                                    forward=False),
    "deletion_insertion": Case(lambda m, x: _attr().deletion_insertion(m, x, 1, x[0, 0], steps=3),
                               bad=lambda m, x: _attr().deletion_insertion(m, x, 1, x[0], steps=3)),
})


# ---- dataset passes (issue 5, lessons 01 and 13): cache=False, so nothing is written under the user's cache
def _ds():
    from cnnviz_helpers import dataset

    return dataset


STATE_MODULES.append("cnnviz_helpers.dataset")
CASES.update({
    "top_activations": Case(lambda m, x: _ds().top_activations(m, ["conv1", "relu2", "fc"], x, k=1, cache=False,
                                                               progress=False),
                            bad=lambda m, x: _ds().top_activations(m, "conv1", x, k=0, cache=False)),
    # relevance (issue 15): a backward from the logits in the same pass; no .grad on any parameter
    "top_activations/relevance": Case(lambda m, x: _ds().top_activations(
        m, ["conv1", "relu2", "fc"], x, k=1, relevance=2, relevance_layers=["conv1", "fc"], cache=False,
        progress=False), bad=lambda m, x: _ds().top_activations(m, "conv1", x, k=1, relevance=9, cache=False)),
    "activations": Case(lambda m, x: _ds().activations(m, ["conv1", "pool"], x, reduction="max", cache=False,
                                                       progress=False),
                        bad=lambda m, x: _ds().activations(m, "conv1", x, reduction="median", cache=False)),
    "model_fingerprint": Case(lambda m, x: _ds().model_fingerprint(m), forward=False),
})


# ---- the incremental occlusion's chain of stages (issue 3, lesson 04)
def _stages():
    from cnnviz_helpers import stages

    return stages


STATE_MODULES.append("cnnviz_helpers.stages")
CASES.update({
    "chain_of": Case(lambda m, x: _stages().chain_of(m, x), bad=lambda m, x: _stages().chain_of(m, x[0])),
    "chain_of/fold": Case(lambda m, x: _stages().chain_of(m, x, fold=True)),
    "folded_copy": Case(lambda m, x: _stages().folded_copy(m, x), bad=lambda m, x: _stages().folded_copy(m, x[0])),
})

STATE_MODULES.append("cnnviz_helpers.attacks")
CASES.update({
    "penalized_attack": Case(lambda m, x: __import__("cnnviz_helpers.attacks").attacks.penalized_attack(
        m, x, 1, c=0.1, steps=2), bad=lambda m, x: __import__("cnnviz_helpers.attacks").attacks.penalized_attack(
        m, x, 1, c=-1.0)),
    "robust_accuracy": Case(lambda m, x: __import__("cnnviz_helpers.attacks").attacks.robust_accuracy(
        m, x, [0] * x.shape[0], eps=[2 / 255], steps=2, progress=False),
        bad=lambda m, x: __import__("cnnviz_helpers.attacks").attacks.robust_accuracy(m, x, [0], eps=[9.0])),
})

STATE_MODULES.append("cnnviz_helpers.quiz")


def _observer(m, x, layer="conv2"):
    from cnnviz_helpers.quiz import Trial, observer_accuracy

    t = Trial(layer, 0, "natural", x[:1], torch.cat([x[:1], x[:1]]), 0, (1.0, 0.0))
    return observer_accuracy(m, [t], layer)


CASES.update({
    "observer_accuracy": Case(_observer, bad=lambda m, x: _observer(m, x, "nope"), bad_exc=KeyError),
})

STATE_MODULES.append("cnnviz_helpers.atlas")


def _atlas(m, x, layer="conv2", **kw):
    from cnnviz_helpers import atlas
    from cnnviz_helpers.dataset import TensorImages

    return atlas.unit_cards(m, layer, TensorImages(x), k=1, fv_size=16, fv_steps=2, tile=8, res=8, per_texture=1,
                            batch_size=2, cache=False, progress=False, **kw)


CASES.update({
    "unit_cards": Case(_atlas, bad=lambda m, x: _atlas(m, x, "nope"), bad_exc=KeyError),
    "feature_visualizations": Case(lambda m, x: __import__("cnnviz_helpers.atlas").atlas.feature_visualizations(
        m, "conv2", [0, 1, 2], size=16, steps=2, batch=2, progress=False),
        bad=lambda m, x: __import__("cnnviz_helpers.atlas").atlas.feature_visualizations(m, "conv2", [], size=16, steps=2)),
    "dissection": Case(lambda m, x: __import__("cnnviz_helpers.atlas").atlas.dissection(
        m, "conv2", __import__("cnnviz_helpers.dataset").dataset.TensorImages(x), res=8, per_texture=1, batch_size=2,
        cache=False, progress=False),
        bad=lambda m, x: __import__("cnnviz_helpers.atlas").atlas.dissection(m, "conv2", x, res=8, per_texture=1),
        bad_exc=TypeError),
})

STATE_MODULES.append("cnnviz_helpers.lesson")
CASES.update({
    "trained": Case(lambda m, x: __import__("cnnviz_helpers.lesson").lesson.trained(m), forward=False,
                    bad=lambda m, x: __import__("cnnviz_helpers.lesson").lesson.trained(m, only="vgg61")),
})


def _model(kind: str):
    return tiny_model(train_mode=(kind == "train"), with_grads=(kind == "train"))


@pytest.mark.parametrize("kind", ["eval", "train"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_success_leaves_model_untouched(name, kind):
    m, x = _model(kind), tiny_input()
    assert_untouched(m, lambda m: CASES[name].run(m, x))


@pytest.mark.parametrize("name", sorted(n for n in CASES if CASES[n].bad is not None))
def test_bad_argument_leaves_model_untouched(name):
    m, x = _model("train"), tiny_input()
    assert_untouched(m, lambda m: CASES[name].bad(m, x), raises=CASES[name].bad_exc)


@pytest.mark.parametrize("exc", [Boom("inside forward"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
@pytest.mark.parametrize("name", sorted(n for n in CASES if CASES[n].forward))
def test_error_inside_forward_leaves_model_untouched(name, exc):
    m, x = _model("train"), tiny_input()
    with raising_in(m, "conv2", exc):
        assert_untouched(m, lambda m: CASES[name].run(m, x), raises=type(exc))


def _public_modules() -> list[str]:
    """Every public module of the package, subpackages' modules too (after the splits of issue 10)."""
    import pkgutil

    return [m.name for m in pkgutil.walk_packages(ch.__path__, "cnnviz_helpers.")
            if not any(part.startswith("_") for part in m.name.split(".")[1:])]


def test_every_public_helper_has_a_case():
    missing = []
    for modname in sorted(set(STATE_MODULES) | set(_public_modules())):
        mod = importlib.import_module(modname)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if inspect.isfunction(obj):
                params = list(inspect.signature(obj).parameters)
                if params and params[0] == "model" and not any(k == name or k.startswith(name + "/") for k in CASES):
                    missing.append(f"{modname}.{name}")
    assert not missing, f"public helpers without a state case in tests/test_state.py: {missing}"


def test_capture_records_the_layer_output_before_an_inplace_relu():
    """TinyNet's conv1 is followed by ReLU(inplace=True): the recorded conv1 output must keep its negatives."""
    m, x = tiny_model(), tiny_input()
    with torch.no_grad():
        want = m.net.features[0](m.normalize(x))
    with hooks.capture(m, ["conv1"]) as rec, torch.no_grad():
        m(x)
    assert float(want.min()) < 0
    assert torch.equal(rec["conv1"], want)
    assert m.net.features[1].inplace  # restored
