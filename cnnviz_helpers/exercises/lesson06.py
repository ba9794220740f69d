"""Checks of lesson 06's exercises (guided backprop and the deconvnet, notebooks/06_guided_backprop.md).

The by-hand answers are checked against the course's backward rules run by autograd on a
real module (``hooks.relu_rule``), the ReLU6 count against forward hooks on the model, the
rule that ignores the photo (exercise 5) against the maps of two photos on the two models.
"""
from __future__ import annotations

import torch
from torch import nn

from ..hooks import module_hooks, relu_rule
from . import Wrong, exercise

__all__ = ["check_1", "check_2", "check_3", "check_4", "check_5"]

RULES = ("gradient", "deconvnet", "guided")
_WHAT = {"gradient": "(f>0)·R: pass where the unit was active",
         "deconvnet": "(R>0)·R: pass where the signal is positive, whatever the forward pass did",
         "guided": "(f>0)·(R>0)·R: both conditions"}


def _maps(answer, n: int) -> dict[str, torch.Tensor]:
    """The answer as {rule: (n,) float tensor}, or a hint about its form."""
    form = f'a dict {{"gradient": [...], "deconvnet": [...], "guided": [...]}} of {n} numbers each'
    if not isinstance(answer, dict) or set(answer) != set(RULES):
        keys = sorted(answer) if isinstance(answer, dict) else type(answer).__name__
        raise Wrong(f"give {form}; got {keys}")
    out = {}
    for rule in RULES:
        try:
            v = torch.as_tensor(answer[rule], dtype=torch.float32).flatten()
        except (TypeError, ValueError):
            raise Wrong(f"answer[{rule!r}] should be {n} numbers, got {answer[rule]!r}") from None
        if v.numel() != n:
            raise Wrong(f"answer[{rule!r}] has {v.numel()} numbers, expected {n} (one per input channel)")
        out[rule] = v
    return out


def _compare(got: dict, want: dict, extra: dict) -> None:
    """Raise a hint for the first rule whose answer differs; ``extra[rule]``: (value, hint) for known mistakes."""
    for rule in RULES:
        g, w = got[rule], want[rule]
        if torch.allclose(g, w, atol=1e-4):
            continue
        for other in RULES:
            if other != rule and torch.allclose(g, want[other], atol=1e-4):
                raise Wrong(f"your {rule} answer is the {other} map; {rule} sends {_WHAT[rule]}")
        if torch.allclose(g, -w, atol=1e-4):
            raise Wrong(f"your {rule} answer has the wrong sign")
        for value, text in extra.get(rule, ()):
            if torch.allclose(g, value, atol=1e-4):
                raise Wrong(text)
        raise Wrong(f"your {rule} answer {g.tolist()} is not right: {rule} sends {_WHAT[rule]}")


def _backward(module: nn.Module, f: torch.Tensor, R: torch.Tensor, rule: str) -> torch.Tensor:
    """What ``rule`` sends below ``module`` for input ``f`` and signal ``R`` arriving from above (autograd)."""
    f = f.clone().requires_grad_(True)
    with relu_rule(module, rule):
        return torch.autograd.grad(module(f), f, grad_outputs=R)[0].flatten()


class _TwoLayer(nn.Module):
    def __init__(self, w1, w2):
        super().__init__()
        self.c1, self.act, self.c2 = nn.Conv2d(3, 3, 1, bias=False), nn.ReLU(), nn.Conv2d(3, 1, 1, bias=False)
        with torch.no_grad():
            self.c1.weight.copy_(torch.as_tensor(w1, dtype=torch.float32).view(3, 3, 1, 1))
            self.c2.weight.copy_(torch.as_tensor(w2, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x):
        return self.c2(self.act(self.c1(x))).flatten(1)


@exercise("06.1", "the three backward maps of the two-layer network with w2 = (4, -1, 2)")
def check_1(answer, *, W1, w2, x):
    got = _maps(answer, 3)
    net = _TwoLayer(W1, w2)
    img = torch.as_tensor(x, dtype=torch.float32).view(1, 3, 1, 1)
    want = {rule: _backward(net, img, torch.ones(1, 1), rule) for rule in RULES}   # autograd through a network
    W = torch.as_tensor(W1, dtype=torch.float32)
    h = W @ img.flatten()
    R = torch.as_tensor(w2, dtype=torch.float32)
    below = {"gradient": (h > 0) * R, "deconvnet": (R > 0) * R, "guided": (h > 0) * (R > 0) * R}
    extra = {rule: [(W @ v, "you multiplied by W1, not its transpose: the map is W1ᵀ R_in, a sum of the "
                            "rows of W1 weighted by the signal"),
                    (v, "that is the signal just below the ReLU; carry it through the first layer: W1ᵀ R_in")]
             for rule, v in below.items()}
    _compare(got, want, extra)


@exercise("06.2", "what each rule sends below a ReLU6 with f = (-1, 3, 7, 2) and R = (2, -1, 5, 4)")
def check_2(answer, *, f, R):
    f, R = torch.as_tensor(f, dtype=torch.float32), torch.as_tensor(R, dtype=torch.float32)
    got = _maps(answer, f.numel())
    want = {rule: _backward(nn.ReLU6(), f, R, rule) for rule in RULES}
    relu = {"gradient": (f > 0) * R, "guided": (f > 0) * (R > 0) * R}          # ReLU's rules, not ReLU6's
    extra = {rule: [(v, f"ReLU6 is flat above 6: its derivative is 0 where f >= 6, so {rule} blocks that entry too")]
             for rule, v in relu.items()}
    extra["deconvnet"] = [((f > 0) * (f < 6) * (R > 0) * R, "the deconvnet ignores the forward pass: "
                                                           "(R>0)·R, whatever f was")]
    _compare(got, want, extra)


@exercise("06.3", "the number of ReLU6 calls in one forward pass of EfficientNet-Lite0")
def check_3(answer, *, model, x):
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise Wrong(f"a count should be an integer (int), got {type(answer).__name__} {answer!r}")
    modules = [m for m in model.modules() if isinstance(m, nn.ReLU6)]
    calls = []
    with module_hooks([(m, lambda mod, i, o: calls.append(1)) for m in modules]), torch.no_grad():
        model(x)
    n = len(calls)
    if answer == n:
        return
    if answer == len(modules):
        raise Wrong(f"{answer} is the number of ReLU6 modules; a module can be called several times per pass")
    if answer == n - 2:
        raise Wrong("two short: the stem and the head call a ReLU6 too")
    if answer == n - 1:
        raise Wrong("one short: did you count both the stem and the head?")
    blocks = getattr(getattr(model, "net", model), "_blocks", ())
    if answer in (2 * len(blocks) + 2, 2 * len(blocks)):
        raise Wrong("a block without expansion (expand_ratio == 1) has no expansion layer: it calls ReLU6 once")
    raise Wrong(f"{answer} calls, but forward hooks count {n}")


@exercise("06.4", "predict which map, guided backprop or the gradient, changes more with the class")
def check_4(prediction, *, r_guided, r_gradient):
    if not isinstance(prediction, str) or prediction.strip().lower() not in ("guided", "gradient"):
        raise Wrong(f'answer with the string "guided" or "gradient", got {prediction!r}')
    fact = "gradient" if r_gradient < r_guided else "guided"
    if prediction.strip().lower() != fact:
        raise Wrong(f"measured: the top-1 and class-500 maps correlate {r_guided:.3f} for guided backprop and "
                    f"{r_gradient:.3f} for the gradient. "
                    + ("Guided backprop keeps only positive signals at every ReLU, so what reaches the pixels "
                       "is mostly the image's own edges, whatever class started it."
                       if fact == "gradient" else
                       "Here guided backprop changed more; the gradient's maps share much of the image's structure."))


_FORM_5 = ('a dict {"no max-pool": ..., "max-pool": ...}, each "gradient", "deconvnet", "guided" or "none"')
_TOL_5 = 1e-4          # "the same map": equal up to float rounding, relative to the map's maximum


def _change(model, rule: str, images, target: int) -> float:
    """How much ``rule``'s map of ``target`` differs between the two images, relative to the first map's maximum."""
    from ..attribution import gradient

    a, b = (gradient(model, im, target, rule=rule)[0] for im in images)
    return float((a - b).abs().max() / max(float(a.abs().max()), 1e-12))


def _choice(answer, key: str) -> str:
    v = answer[key]
    if not isinstance(v, str) or v.strip().lower() not in RULES + ("none",):
        raise Wrong(f'answer_5[{key!r}] should be "gradient", "deconvnet", "guided" or "none", got {v!r}')
    return v.strip().lower()


@exercise("06.5", "which rule's map is the same for every photo, on a model without and with max-pooling")
def check_5(answer, *, flat_model, pool_model, images, flat_target: int, pool_target: int):
    if not isinstance(answer, dict) or set(answer) != {"no max-pool", "max-pool"}:
        keys = sorted(answer) if isinstance(answer, dict) else type(answer).__name__
        raise Wrong(f"give {_FORM_5}; got {keys}")
    if len(images) != 2:
        raise ValueError(f"check_5 compares two photos, got {len(images)}")
    flat, pool = _choice(answer, "no max-pool"), _choice(answer, "max-pool")
    fname = getattr(flat_model, "name", type(flat_model).__name__)
    pname = getattr(pool_model, "name", type(pool_model).__name__)
    changes = {rule: _change(flat_model, rule, images, flat_target) for rule in RULES}
    same = [rule for rule in RULES if changes[rule] < _TOL_5]
    fact_flat = same[0] if len(same) == 1 else "none"
    if flat != fact_flat:
        if flat in ("gradient", "guided"):
            raise Wrong(f"measured on {fname}: the two photos' {flat} maps differ by up to {changes[flat]:.0%} of "
                        f"the map's maximum. {flat} keeps the forward condition (f > 0) at every ReLU, and f "
                        f"changes with the photo; which rule ignores f?")
        if flat == "none":
            raise Wrong(f"measured on {fname}: the two photos' {fact_flat} maps are the same (they differ by "
                        f"{changes[fact_flat]:.1e} of the maximum). The deconvnet ignores f at every ReLU, and "
                        f"every other layer of this model (convolutions, batch norm, sums, average pooling) is "
                        f"crossed by a fixed linear map")
        raise Wrong(f"measured on {fname}: the {flat} maps of the two photos differ by {changes[flat]:.1e} of the "
                    f"maximum, the {fact_flat} maps are the same")
    # on the max-pool model only the deconvnet can be photo-independent (the other two read f everywhere)
    pool_change = _change(pool_model, "deconvnet", images, pool_target)
    fact_pool = "deconvnet" if pool_change < _TOL_5 else "none"
    if pool != fact_pool:
        if pool == "deconvnet":
            raise Wrong(f"measured on {pname}: its two deconvnet maps differ by up to {pool_change:.0%} of the "
                        f"maximum. The backward pass through a max-pool sends the signal to the position of the "
                        f"maximum in the forward pass (Zeiler & Fergus's switches), and the photo decides where "
                        f"that is")
        if pool in ("gradient", "guided"):
            raise Wrong(f"{pool} reads f (f > 0) at every ReLU on any model, so its map changes with the photo; "
                        f"and on {pname} even the deconvnet's does (the max-pool switches)")
        raise Wrong(f"measured on {pname}: its two deconvnet maps are the same ({pool_change:.1e} of the maximum)")
