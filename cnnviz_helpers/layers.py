"""List and resolve layers by name.

Layers are named by the dotted names of ``model.named_modules()``; course
models add lecture aliases (``conv1`` .. ``fc8``, ``block3``). Introduced in
lesson 03. Receptive fields (lesson 01) live in ``receptive`` and are
re-exported here.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ._names import _aliases, layer_names, resolve_layer, resolve_layers
from ._util import device_of, size_pair
from .hooks import capture
from .receptive import ReceptiveField, receptive_field

__all__ = ["LayerInfo", "list_layers", "resolve_layer", "resolve_layers", "layer_names", "ReceptiveField", "receptive_field"]



@dataclass(frozen=True)
class LayerInfo:
    """One row of ``list_layers``: dotted name, lecture alias(es), module type, output shape, parameter count."""

    name: str
    aliases: tuple[str, ...]
    type: str
    output_shape: tuple[int, ...] | None
    params: int

    def __str__(self) -> str:
        shape = "x".join(map(str, self.output_shape)) if self.output_shape else "(not called)"
        al = ",".join(self.aliases)
        return f"{self.name:<28} {al:<22} {self.type:<24} {shape:<16} {self.params}"


class LayerTable(list):
    """A list of ``LayerInfo`` that prints as a table."""

    def __repr__(self) -> str:
        head = f"{'name':<28} {'alias':<22} {'type':<24} {'output (C,H,W)':<16} params"
        return "\n".join([head] + [str(r) for r in self])

    def _repr_pretty_(self, p, cycle) -> None:  # IPython
        p.text(repr(self))


def list_layers(
    model: nn.Module,
    input_size: int | tuple[int, int] | None = None,
    *,
    aliased_only: bool = False,
) -> LayerTable:
    """Every named layer with its lecture aliases and output shape (one forward pass on zeros).

    ``input_size``: H or (H, W); default the model's ``input_size`` (224 otherwise).
    ``aliased_only=True`` keeps the rows that have a lecture alias.
    The model's state is left exactly as found (see ``hooks.capture``).
    """
    h, w = size_pair(input_size if input_size is not None else getattr(model, "input_size", 224))
    by_module: dict[str, list[str]] = {}
    for a, d in _aliases(model).items():
        by_module.setdefault(d, []).append(a)
    names = [n for n, _ in model.named_modules() if n]
    with capture(model, names, detach=True) as rec, torch.no_grad():
        model(torch.zeros(1, 3, h, w, device=device_of(model)))
    shapes = {n: tuple(t.shape[1:]) for n, t in rec.activations.items()}
    rows = LayerTable()
    for n, m in model.named_modules():
        if not n:
            continue
        al = tuple(by_module.get(n, ()))
        if aliased_only and not al:
            continue
        rows.append(LayerInfo(n, al, type(m).__name__, shapes.get(n), sum(p.numel() for p in m.parameters(recurse=False))))
    return rows
