"""Objectives (scores to maximize) and penalties (to subtract), composed with ``+ - * /``.

An objective is a small callable that reads what one forward pass produced
(activations of named layers, the logits, the image itself) and returns one
score per image, shape ``(N,)``. It never touches the model: it *declares* the
layers it reads (``.layers``), ``optimize`` hooks exactly those, and a bad
layer name fails before the first step.

    >>> from cnnviz_helpers import objectives as obj
    >>> o = obj.class_logit("ostrich") - 1e-2 * obj.l2() - 1e-3 * obj.tv(beta=2)
    >>> o                                    # class_logit(9) - 0.01*l2(center=0.5) - 0.001*tv(beta=2)
    >>> o.layers                             # () : only the logits are needed
    >>> obj.channel("block4", 12).layers     # ('block4',)

Scores (maximize):
    ``class_logit(c)``   the pre-softmax score S_c (lesson 08)
    ``log_prob(c)``      log softmax_c, for attacks (lesson 12)
    ``channel(layer, k)``  mean of channel k's map (lesson 08)
    ``neuron(layer, k, i, j)`` one unit (lesson 08); ``neurons(layer, units)``, ``channels(layer, units)``: one unit per image
    ``layer_l2(layer)``  ||h||^2 of a layer, DeepDream (lesson 10)
    ``feature_match(layer, target)``  -||phi(x)-phi0||^2/||phi0||^2, inversion (lesson 09)
    ``content(layer, target)``  -content loss (lesson 11)
    ``style({layer: gram}, weights)``  -sum_l w_l E_l with Gram matrices (lesson 11)
Penalties (subtract ``lambda * penalty``), all computed on the image in [0,1]:
    ``l2()``, ``alpha_norm(alpha)``, ``tv(beta)``, ``blur(sigma)``
Helpers: ``gram_matrix(act)``, ``features(model, x, layers)`` (targets for
``feature_match``, ``content`` and ``style``).
"""
from .base import Context, Objective
from .penalties import alpha_norm, blur, gaussian_kernel, l2, tv
from .scores import (channel, channels, class_logit, content, feature_match, features, gram_matrix, layer_l2, log_prob, neuron,
                     neurons, style)

__all__ = [
    "Objective",
    "Context",
    "class_logit",
    "log_prob",
    "channel",
    "neuron",
    "neurons",
    "channels",
    "layer_l2",
    "feature_match",
    "content",
    "style",
    "gram_matrix",
    "features",
    "l2",
    "alpha_norm",
    "tv",
    "blur",
    "gaussian_kernel",
]
