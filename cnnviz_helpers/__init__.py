"""cnnviz_helpers: the small helpers package of the cnnviz course.

Images are ``(N,3,H,W)`` float in [0,1] everywhere; models normalize inside.
Layers are named by dotted module names or lecture aliases. Every helper
leaves the model exactly as it found it (see ``hooks``).

The layers of the package (ARCHITECTURE.md has the table); a module imports
only from its own layer or those above it:

0. ``config``, ``labels``, ``_checks``, ``_util``, ``_names``: foundations
1. ``hooks/``: the only place that registers hooks (``capture``, ``relu_rule``)
2. ``images``, ``data``, ``models``, ``lesson``, ``layers``, ``receptive``
3. ``attribution/``, ``dataset/``, ``runs`` (the cells' cache), ``stages``, ``objectives``, ``params``, ``transforms``, ``regularizers``, ``optimize``
4. ``plotting``, ``widgets``, ``quiz``, ``cli``, ``prepare``, ``warm``, ``lab``, ``student``, ``exercises/``, ``glue``

One word, one meaning, everywhere:

- *unit* (neuron): one number of a layer's output, channel ``k`` at position ``(i, j)``;
  without a position, the centre unit ``(H//2, W//2)`` (``attribution.Neuron``,
  ``objectives.neuron``).
- *channel*: the whole map of channel ``k``, scored by its mean over positions
  (``attribution.Channel``, ``objectives.channel``).
- *position*: ``(row, column)`` in a feature map; a *layer* is an alias or a dotted name.
- ``reduction``: how positions or images are combined (``"mean"``, ``"max"``, ``"sum"``).
- ``size``: pixels (an image's side, a widget's width); figure panels are ``inches``.

    >>> from cnnviz_helpers import load_model, load_image, capture
    >>> model = load_model()                        # EfficientNet-Lite0, offline
    >>> x = model.preprocess("photo.jpg")           # (1,3,224,224) in [0,1]
    >>> with capture(model, ["block2", "block5"]) as rec:
    ...     logits = model(x)
"""
from .config import data_dir, pick, quick_mode, tune_allocator
from .data import ImageNetSamples, class_index, fetch, sample_path, sample_paths, style_path
from .hooks import ModelSnapshot, capture, count_hooks, frozen, relu_rule
from .images import center_crop, load_image, resize, resize_short_side, to_numpy
from .layers import list_layers, receptive_field, resolve_layer
from .models import MODEL_NAMES, CourseModel, WeightsUnavailableError, default_device, load_model
from .lesson import course_model, trained

__version__ = "0.1.0"

__all__ = [
    "CourseModel", "ImageNetSamples", "MODEL_NAMES", "ModelSnapshot", "WeightsUnavailableError",
    "capture", "center_crop", "class_index", "count_hooks", "course_model", "data_dir", "default_device", "fetch",
    "frozen", "list_layers", "load_image", "load_model", "pick", "quick_mode", "receptive_field",
    "relu_rule", "resize", "resize_short_side", "resolve_layer", "sample_path", "sample_paths",
    "style_path", "to_numpy", "trained",
]
