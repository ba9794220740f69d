"""One owner for every hook and every temporary change to a model.

- ``frozen(model)``: eval mode, parameters frozen (``requires_grad=False``) for
  the duration; on exit (normal, error or Ctrl-C) ``model.training`` of every
  module, every ``requires_grad`` and every ``.grad`` are exactly as before.
- ``capture(model, layers, gradients=False)``: records activations (outputs,
  and inputs with ``inputs=``; their gradients through tensor hooks) of named
  layers; ``rec.run(x)`` runs one pass (``stop=True``: only as deep as needed);
  no hook outlives the block.
- ``relu_rule(model, rule)``: backward rule of every ReLU-family module for
  guided backprop / deconvnet (lesson 06); ``inplace`` flags restored on exit.
- ``module_hooks(forward, pre=...)``: plain module hooks for the block, for the
  few helpers that need a callback that is neither of the above.
- ``ModelSnapshot``: a record of all of the above, to compare before/after (tests).

This subpackage is the only place in ``cnnviz_helpers`` that registers hooks
(``_register``). Introduced in lesson 03; every helper that runs a model goes
through here.
"""
from __future__ import annotations

from ._register import module_hooks
from .capture import Capture, LayerNotCalledError, capture
from .relu import RELU_FAMILY, RELU_RULES, relu_rule
from .state import ModelSnapshot, count_hooks, frozen

__all__ = [
    "frozen",
    "capture",
    "Capture",
    "relu_rule",
    "RELU_RULES",
    "RELU_FAMILY",
    "count_hooks",
    "ModelSnapshot",
    "LayerNotCalledError",
    "module_hooks",
]
