"""Attribution: which pixels made the model say "cat"? (lessons 04-07)

Every function takes a model in the course convention (images ``(N,3,H,W)``
float in [0,1], normalization inside the model) and returns tensors on the
input's device, never min-max normalized (plotting does that for display).

- ``occlusion``: grey out a sliding patch, record the probabilities of **all**
  classes for every patch position in batched passes (lesson 04).
- ``gradient``, ``saliency``, ``input_x_gradient``, ``smoothgrad``: the
  gradient of a score with respect to the input pixels (lesson 05);
  ``Neuron(layer, channel, position)`` makes the score one unit of a feature map,
  ``Channel(layer, channel)`` the mean of one channel's map.
- ``guided_backprop``, ``deconvnet``: the same backward pass with the ReLU
  rule changed (``gradient(..., rule=...)``, lesson 06).
- ``cam``, ``gradcam``, ``guided_gradcam``: class activation maps (lesson 07); ``class_map``: CAM
  where the head allows it, else Grad-CAM, saying so (every course model).
- ``integrated_gradients`` (Sundararajan et al. 2017) and, in ``metrics``, one evaluation metric
  per family for lesson 07's report card (``max_sensitivity``, ``gini``, ``random_logit``,
  ``completeness_gap``, ``input_invariance``, ``paste`` + ``pointing_game``).
- ``cascading_randomization``, ``rank_correlation``: the sanity checks of
  Adebayo et al. 2018; ``deletion_insertion``: faithfulness curves
  (Petsiuk et al. 2018).

A *target* says which score to explain: a class index (``281``), a class
name (``"tabby"``, course models only), one index or name per image, a
``Neuron``, or a callable ``f(logits) -> (N,)`` scores. Class scores are the
pre-softmax logits S_c, as in Simonyan et al.

Every helper leaves the model as it found it (hooks, training flags,
``requires_grad``, ``.grad``, ReLU ``inplace`` flags), also on errors: it
works through ``hooks.frozen`` and ``hooks.relu_rule`` and computes
gradients with ``torch.autograd.grad

The subpackage, one module per job: ``targets`` (what to explain), ``_engine``
(taps on layers and one forward + backward pass), ``gradients``, ``occlusion``,
``cam``, ``sanity``, ``faithfulness``. Import it whole:
``from cnnviz_helpers import attribution as A; A.gradient(...)``.
"""
from __future__ import annotations

from ._engine import functional_relus
from .cam import cam, class_map, gradcam, guided_gradcam, upsample_map
from .faithfulness import FaithfulnessCurves, _blur, deletion_insertion
from .gradients import (deconvnet, gradient, guided_backprop, input_x_gradient, integrated_gradients, saliency,
                        saliency_map, smoothgrad)
from .metrics import (Shifted, completeness_gap, gini, input_invariance, max_sensitivity, paste, pointing_game,
                      random_logit)
from .occlusion import OCCLUSION_METHODS, OcclusionResult, best_batch_size, occlusion, occlusion_positions
from .sanity import cascading_randomization, rank_correlation
from .targets import Channel, Neuron, Target, class_scores

__all__ = [
    "Channel",
    "Neuron",
    "Target",
    "OcclusionResult",
    "FaithfulnessCurves",
    "class_scores",
    "gradient",
    "saliency",
    "saliency_map",
    "input_x_gradient",
    "smoothgrad",
    "guided_backprop",
    "deconvnet",
    "occlusion",
    "occlusion_positions",
    "best_batch_size",
    "cam",
    "class_map",
    "gradcam",
    "guided_gradcam",
    "upsample_map",
    "functional_relus",
    "cascading_randomization",
    "rank_correlation",
    "deletion_insertion",
    "integrated_gradients",
    "gini",
    "max_sensitivity",
    "random_logit",
    "completeness_gap",
    "Shifted",
    "input_invariance",
    "paste",
    "pointing_game",
]
