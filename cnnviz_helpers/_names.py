"""Layer names (private): resolve a dotted module name or a lecture alias to ``(dotted, module)``.

The lowest layer of the package: imports nothing from it, so ``hooks`` and
``layers`` can both build on it. The public spelling is ``layers.resolve_layer``.
"""
from __future__ import annotations

import difflib
from typing import Iterable

from torch import nn

from ._checks import check_layer_name
__all__ = ["layer_names", "resolve_layer", "resolve_layers"]


def _aliases(model: nn.Module) -> dict[str, str]:
    return dict(getattr(model, "aliases", {}) or {})


def layer_names(model: nn.Module) -> list[str]:
    """Every dotted module name of ``model`` (the root, named '', excluded)."""
    return [n for n, _ in model.named_modules() if n]


def resolve_layer(model: nn.Module, name: str) -> tuple[str, nn.Module]:
    """Resolve a layer name or lecture alias to ``(dotted_name, module)``.

    Accepts an alias (``"conv5"``), a dotted name (``"net.features.10"``) or, for
    course models, a name inside the wrapped network (``"features.10"``).
    An unknown name raises ``KeyError`` naming it, the closest valid names and
    how to list them all.
    """
    check_layer_name(name)
    aliases = _aliases(model)
    modules = dict(model.named_modules())
    dotted = aliases.get(name, name)
    if dotted in modules and dotted:
        return dotted, modules[dotted]
    if "net" in modules and f"net.{name}" in modules:
        return f"net.{name}", modules[f"net.{name}"]
    choices = list(aliases) + [n for n in modules if n]
    close = difflib.get_close_matches(name, choices, n=5, cutoff=0.5)
    hint = f" Closest valid names: {', '.join(close)}." if close else ""
    some = ", ".join(list(aliases)[:12]) or ", ".join(list(modules)[1:13])
    raise KeyError(
        f"unknown layer {name!r} in {type(model).__name__}"
        f"{' ' + repr(getattr(model, 'name', '')) if getattr(model, 'name', '') else ''}.{hint} "
        f"Aliases include: {some}. List every layer with cnnviz_helpers.list_layers(model)."
    )


def resolve_layers(model: nn.Module, names: str | Iterable[str]) -> dict[str, tuple[str, nn.Module]]:
    """Resolve several names at once (all validated before anything runs): name -> (dotted, module)."""
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise ValueError("no layer names given: pass at least one, e.g. ['conv1'] (see list_layers(model))")
    return {n: resolve_layer(model, n) for n in names}
