"""The lecture's layer names of every course model (``conv1`` .. ``fc8``, ``block1`` .. ``block7`` ...),
as aliases of the dotted module names (``net.features.0``). ``resolve_layer`` accepts both."""
from __future__ import annotations

from torch import nn

__all__ = ["effnet_aliases", "lecture_aliases"]


def effnet_aliases(net: nn.Module) -> dict[str, str]:
    """``stem``, ``block1``..``block7`` (the last MBConv block of each stage), ``head``, ``pool``, ``fc``.

    A *stage* is a run of blocks with the same kernel/stride/width in the
    EfficientNet recipe; ``blockK`` is the output of stage K, ``blockK.J`` the
    J-th block (from 1) inside stage K.
    """
    aliases = {"stem": "net._conv_stem", "stem_bn": "net._bn0"}
    stage, j = 0, 0
    prev_out = None
    for i, blk in enumerate(net._blocks):
        args = blk._block_args
        if args.stride != 1 or args.input_filters != args.output_filters or prev_out is None or args.output_filters != prev_out:
            stage += 1
            j = 0
        j += 1
        prev_out = args.output_filters
        aliases[f"block{stage}.{j}"] = f"net._blocks.{i}"
        aliases[f"block{stage}"] = f"net._blocks.{i}"
    aliases.update({"head": "net._conv_head", "head_bn": "net._bn1", "pool": "net._avg_pooling", "fc": "net._fc"})
    return aliases


def _alexnet_aliases() -> dict[str, str]:
    # features: 0 conv1, 1 relu, 2 pool1, 3 conv2, 4 relu, 5 pool2, 6 conv3, 7, 8 conv4, 9, 10 conv5, 11 relu, 12 pool5
    a = {"conv1": "net.features.0", "relu1": "net.features.1", "pool1": "net.features.2",
         "conv2": "net.features.3", "relu2": "net.features.4", "pool2": "net.features.5",
         "conv3": "net.features.6", "relu3": "net.features.7",
         "conv4": "net.features.8", "relu4": "net.features.9",
         "conv5": "net.features.10", "relu5": "net.features.11", "pool5": "net.features.12",
         "fc6": "net.classifier.1", "relu6": "net.classifier.2",
         "fc7": "net.classifier.4", "relu7": "net.classifier.5", "fc8": "net.classifier.6"}
    return a


def _vgg_aliases(net: nn.Module) -> dict[str, str]:
    """``convB_K`` for each conv, ``convB`` = last conv of block B, ``poolB``, ``fc6``..``fc8``."""
    a: dict[str, str] = {}
    block, k = 1, 0
    for i, m in enumerate(net.features):
        if isinstance(m, nn.Conv2d):
            k += 1
            a[f"conv{block}_{k}"] = f"net.features.{i}"
            a[f"conv{block}"] = f"net.features.{i}"
        elif isinstance(m, nn.ReLU):
            a[f"relu{block}_{k}"] = f"net.features.{i}"
        elif isinstance(m, nn.MaxPool2d):
            a[f"pool{block}"] = f"net.features.{i}"
            block, k = block + 1, 0
    a.update({"fc6": "net.classifier.0", "relu6": "net.classifier.1", "fc7": "net.classifier.3",
              "relu7": "net.classifier.4", "fc8": "net.classifier.6"})
    return a


def _googlenet_aliases() -> dict[str, str]:
    a = {"conv1": "net.conv1", "pool1": "net.maxpool1", "conv2": "net.conv2", "conv3": "net.conv3",
         "pool2": "net.maxpool2", "pool3": "net.maxpool3", "pool4": "net.maxpool4",
         "pool5": "net.avgpool", "fc": "net.fc"}
    for n in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
        a[f"inception{n}"] = f"net.inception{n}"
    return a


def _resnet_aliases() -> dict[str, str]:
    return {"conv1": "net.conv1", "pool1": "net.maxpool", "layer1": "net.layer1", "layer2": "net.layer2",
            "layer3": "net.layer3", "layer4": "net.layer4", "pool5": "net.avgpool", "fc": "net.fc"}


def _squeezenet_aliases(net: nn.Module) -> dict[str, str]:
    a = {"conv1": "net.features.0", "pool1": "net.features.2", "conv10": "net.classifier.1",
         "pool10": "net.classifier.3"}
    fire = 2
    for i, m in enumerate(net.features):
        if type(m).__name__ == "Fire":
            a[f"fire{fire}"] = f"net.features.{i}"
            fire += 1
        elif isinstance(m, nn.MaxPool2d) and i > 2:
            a[f"pool{fire - 1}"] = f"net.features.{i}"
    return a


def lecture_aliases(name: str, net: nn.Module) -> dict[str, str]:
    """The aliases of torchvision lecture model ``name`` built as ``net``."""
    table = {
        "alexnet": lambda: _alexnet_aliases(),
        "vgg16": lambda: _vgg_aliases(net),
        "vgg19": lambda: _vgg_aliases(net),
        "googlenet": _googlenet_aliases,
        "resnet18": _resnet_aliases,
        "squeezenet1_1": lambda: _squeezenet_aliases(net),
    }
    if name not in table:
        raise ValueError(f"no lecture aliases for {name!r}; models with aliases: {', '.join(table)}")
    return table[name]()
