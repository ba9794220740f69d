"""``capture``: record what named layers compute during forward passes (and the gradients reaching them)."""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch
from torch import nn

from .._names import resolve_layers
from ._register import module_hooks, tensor_hook
from .state import frozen, switch_off_inplace

__all__ = ["capture", "Capture", "LayerNotCalledError"]


class LayerNotCalledError(RuntimeError):
    """A hooked layer never ran during the forward pass."""


class _StopForward(Exception):
    """Raised inside forward() once every requested layer has run (``capture(..., stop=True)``)."""


class Capture:
    """What ``capture`` recorded: ``activations[name]`` (outputs), ``inputs[name]`` and ``gradients[name]``.

    Keys are the names as asked. A layer that runs several times in one forward
    keeps its first output. Tensors are not detached (unless ``detach=True``):
    an activation can be the target of ``torch.autograd.grad`` (e.g. a neuron's score).
    """

    def __init__(self, model: nn.Module, names: list[str], input_names: list[str], dotted: dict[str, str]) -> None:
        self.model = model
        self.names = names
        self.input_names = input_names
        self.dotted = dotted
        self.activations: dict[str, torch.Tensor] = {}
        self.inputs: dict[str, torch.Tensor] = {}
        self.gradients: dict[str, torch.Tensor] = {}
        self._versions: dict[str, int] = {}
        self._grad_was_off = False  # grad_from switched grad mode on during this pass (``_restore_grad``)

    def _restore_grad(self) -> None:
        if self._grad_was_off:
            torch.set_grad_enabled(False)
            self._grad_was_off = False

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.activations:
            if name in self.names:
                raise LayerNotCalledError(
                    f"layer {name!r} ({self.dotted[name]}) has no recorded activation: run the model inside "
                    f"the `with capture(...)` block (is this layer used in forward()?)"
                )
            raise KeyError(f"{name!r} was not captured; captured layers: {', '.join(self.names)}")
        return self.activations[name]

    def reset(self) -> None:
        """Forget the last pass (``run`` does this before each pass)."""
        self.activations.clear()
        self.inputs.clear()
        self.gradients.clear()
        self._versions.clear()

    def _complete(self) -> bool:
        return all(n in self.activations for n in self.names) and all(n in self.inputs for n in self.input_names)

    def check_called(self) -> None:
        """Raise ``LayerNotCalledError`` naming every requested layer that did not run in the last pass."""
        missing = [n for n in self.names if n not in self.activations]
        missing += [n for n in self.input_names if n not in self.inputs and n not in missing]
        if missing:
            raise LayerNotCalledError(
                f"layer(s) {', '.join(repr(m) + ' (' + self.dotted[m] + ')' for m in missing)} never ran in "
                f"forward(): is this layer used in the model's forward()?"
            )

    def check_unmodified(self) -> None:
        """Raise if a recorded output was changed in place later in forward() (``out += identity``,
        ``F.relu(x, inplace=True)``): what was recorded there is not the layer's output."""
        for n in self.names:
            if n in self.activations and self.activations[n]._version != self._versions[n]:
                raise RuntimeError(
                    f"the output of layer {n!r} ({self.dotted[n]}) is modified in place later in the model's "
                    f"forward() (e.g. `out += identity` or F.relu(x, inplace=True)): its recorded value is not "
                    f"the layer's output. Use the next layer (see list_layers(model)).")

    def run(self, x: torch.Tensor) -> torch.Tensor | None:
        """One forward pass ``model(x)``, the last pass forgotten first; raises if a layer did not run.

        Returns the model's output, or ``None`` when ``stop=True`` ended the pass after the
        deepest requested layer.
        """
        self.reset()
        try:
            out = self.model(x)
        except _StopForward:
            out = None
        finally:
            self._restore_grad()  # grad_from under torch.no_grad(): grad mode as before the pass
        self.check_called()
        return out


def _first_tensor(out) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def _by_module(resolved: dict[str, tuple[str, nn.Module]]) -> list[tuple[nn.Module, list[str]]]:
    """One entry per module, with every name that points at it (aliases of one layer share a hook)."""
    groups: dict[int, tuple[nn.Module, list[str]]] = {}
    for n, (_, m) in resolved.items():
        groups.setdefault(id(m), (m, []))[1].append(n)
    return list(groups.values())


def _names(layers: str | Iterable[str]) -> list[str]:
    return [layers] if isinstance(layers, str) else list(layers)


@contextlib.contextmanager
def capture(
    model: nn.Module,
    layers: str | Iterable[str] = (),
    *,
    inputs: str | Iterable[str] = (),
    gradients: bool = False,
    detach: bool = False,
    protect: bool = False,
    stop: bool = False,
    grad_from: str | Iterable[str] = (),
) -> Iterator[Capture]:
    """Record the outputs (and, with ``gradients=True``, their gradients) of named layers.

    The model is ``frozen`` (eval, parameters frozen) and every in-place flag is
    off for the block; hooks are removed and every flag restored on exit, also
    on error or Ctrl-C. Names are validated before any hook is registered.

    - ``inputs``: layers whose *input* is recorded too (``rec.inputs[name]``).
    - ``protect``: the recorded tensor is passed on as a copy, so a later in-place
      operation cannot change it (or the gradient taken with respect to it).
    - ``stop``: ``rec.run(x)`` ends the forward pass once every requested layer has run.
    - ``grad_from``: recorded layers where the autograd graph starts: the first of them to run in
      a pass passes on (and records) a detached copy of its output that requires grad, so that
      ``torch.autograd.grad(score, [rec[n], ...])`` reaches it and every recorded layer after it,
      with nothing recorded before it (the parameters stay frozen: no ``.grad`` is made). Under
      ``torch.no_grad()`` grad mode is switched on there, so the layers before it run as cheaply as
      in inference; ``rec.run`` (or the end of the block) switches it off again.

    >>> with capture(model, ["block2", "block4"]) as rec:
    ...     model(x)
    >>> rec["block2"].shape          # (N, C, H, W)
    """
    out_names, in_names = _names(layers), _names(inputs)
    resolved = resolve_layers(model, out_names) if out_names or not in_names else {}
    resolved_in = resolve_layers(model, in_names) if in_names else {}
    dotted = {n: d for n, (d, _) in {**resolved_in, **resolved}.items()}
    rec = Capture(model, list(resolved), list(resolved_in), dotted)
    leaf_names = set(_names(grad_from))
    if leaf_names - set(resolved):
        raise ValueError(f"grad_from names {sorted(leaf_names - set(resolved))}, which are not recorded layers; "
                         f"recorded layers: {', '.join(resolved)}")

    def on_output(keys: list[str]):
        def hook(mod, inp, out):
            t = _first_tensor(out)
            if keys[0] in rec.activations or t is None:
                return None
            replaced = None
            if leaf_names.intersection(keys) and not t.requires_grad and t is out:
                if not torch.is_grad_enabled():  # under no_grad: record the graph from here on only
                    torch.set_grad_enabled(True)
                    rec._grad_was_off = True
                t = replaced = t.detach().requires_grad_(True)  # the graph of this pass starts here
            for k in keys:
                rec.activations[k] = t.detach() if detach else t
                rec._versions[k] = t._version
            if gradients and t.requires_grad:
                def save(g):
                    for k in keys:
                        rec.gradients[k] = g.detach()
                tensor_hook(t, save)
            if stop and rec._complete():
                raise _StopForward
            if replaced is not None:
                return replaced.clone() if protect else replaced
            return out.clone() if protect and t is out else None
        return hook

    def on_input(keys: list[str]):
        def hook(mod, inp):
            if keys[0] in rec.inputs or not inp or not isinstance(inp[0], torch.Tensor):
                return None
            for k in keys:
                rec.inputs[k] = inp[0].detach() if detach else inp[0]
            if stop and rec._complete():
                raise _StopForward
            return (inp[0].clone(),) + tuple(inp[1:]) if protect else None
        return hook

    fwd = [(m, on_output(keys)) for m, keys in _by_module(resolved)]
    pre = [(m, on_input(keys)) for m, keys in _by_module(resolved_in)]
    # an in-place activation after a hooked layer would overwrite the recorded output
    with frozen(model), switch_off_inplace(list(model.modules())), module_hooks(fwd, pre=pre):
        try:
            yield rec
        finally:
            rec._restore_grad()
