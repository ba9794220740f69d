"""Dataset-wide passes: run a set of photos through a model once and keep what a lesson needs.

- ``PhotoSet(classes, size=224)``: the course photos (one per ImageNet class),
  decoded once into ``(N,3,S,S)`` uint8 (resize the short side, centre crop,
  exactly as ``CourseModel.preprocess``, then rounded to 8 bits). The first
  pass decodes in background threads *while* the model runs; the decoded
  tensor is kept in memory and on disk, so later passes skip JPEG decoding.
- ``StreamingTopK``: per unit (channel), the ``k`` images with the largest
  activation (maximum over positions) with the position of that maximum,
  updated batch by batch: O(k) memory per unit, whatever the number of photos.
- ``top_activations(model, layers, photos, k=9)``: one pass for several layers;
  each ``TopK`` maps a position to its receptive field and crops the patches.
- ``activations(model, layers, photos, reduction=None)``: a layer's outputs for
  every photo (embeddings, dissection masks).
- ``top_activations(..., relevance="label")``: in the same pass, each unit's top-k by
  *relevance* to the class (gradient x activation summed over positions) and the full
  tables of both scores; ``spearman`` compares the two orderings per unit (``relevance``).
- ``runs_dir()``: where results are cached: ``$CNNVIZ_CACHE`` or
  ``~/.cache/cnnviz-runs``, created on first write, separate from the course
  images (``config.data_dir()`` may be read-only). A result is keyed by the
  model's name *and a hash of its weights*, the layer, the photo set (the files'
  sha256 and the size) and the settings, so a second run is served from disk and
  a changed model or image set is never served stale results.

Introduced in lesson 01 (maximally activating patches); used by lessons 12 and 13 and the atlas pages.

One module per job: ``cache`` (``runs_dir``, keys, atomic writes), ``photos``
(``PhotoSet``, ``TensorImages``), ``topk`` (``StreamingTopK``, ``TopK``),
``passes`` (``top_activations``, ``activations``), ``spectrum`` (``natural_spectrum``: the photos'
average Fourier magnitude, which ``params.maco`` keeps fixed).
"""
from __future__ import annotations

from .cache import CACHE_ENV, CacheWarning, cache_enabled, model_fingerprint, runs_dir
from .passes import REDUCTIONS, activations, top_activations
from .photos import PhotoSet, TensorImages, _default_workers
from .relevance import rankdata, spearman
from .spectrum import magnitude_spectrum, natural_spectrum, spectrum_distance
from .topk import StreamingTopK, TopK

__all__ = [
    "CACHE_ENV",
    "CacheWarning",
    "runs_dir",
    "cache_enabled",
    "model_fingerprint",
    "PhotoSet",
    "TensorImages",
    "StreamingTopK",
    "TopK",
    "top_activations",
    "activations",
    "REDUCTIONS",
    "spearman",
    "rankdata",
    "natural_spectrum",
    "magnitude_spectrum",
    "spectrum_distance",
]
