"""The lecture's layer names of every course model (``conv1`` .. ``fc8``, ``block1`` .. ``block7`` ...),
as aliases of the dotted module names (``net.features.0``). ``resolve_layer`` accepts both."""
from __future__ import annotations

from torch import nn

__all__ = ["STAGES", "effnet_aliases", "lecture_aliases", "stage_aliases"]

#: The portable stage names: the same idea on every course model (``stage_aliases`` maps them).
#: ``first_conv``: the first convolution (its output, before the activation);
#: ``early`` .. ``late``: five feature maps from shallow to deep; ``last_conv``: the last
#: feature map before the global pooling (Grad-CAM's layer); ``embedding``: the penultimate
#: representation (what lesson 09 inverts, lesson 13 compares); ``logits``: the class scores.
STAGES = ("first_conv", "early", "early_mid", "mid", "mid_late", "late", "last_conv", "embedding", "logits")

# model -> the alias (or dotted name) each stage stands for. Lecture aliases where the lecture has
# a name for the layer (AlexNet ``relu5``, VGG ``relu5_3``, GoogLeNet ``inception4e``).
_STAGE_TABLE = {
    "efficientnet": ("stem", "block2", "block3", "block4", "block5", "block6", "head", "pool", "fc"),
    "alexnet": ("conv1", "relu2", "relu3", "relu4", "relu5", "relu5", "relu5", "relu7", "fc8"),
    "vgg": ("conv1_1", "relu2_*", "relu3_*", "relu4_*", "relu5_1", "relu5_*", "relu5_*", "relu7", "fc8"),  # *: last of the block
    "googlenet": ("conv1", "inception3a", "inception3b", "inception4b", "inception4d", "inception4e",
                  "inception5b", "pool5", "fc"),
    "resnet18": ("conv1", "layer1", "layer2", "net.layer3.0", "layer3", "net.layer4.0", "layer4", "pool5", "fc"),
    # SqueezeNet has no pooled embedding: its classifier is a 1x1 convolution on the fire9 maps,
    # so its embedding is the fire9 map itself; its logits are the pooled class maps.
    "squeezenet1_1": ("conv1", "fire3", "fire5", "fire6", "fire7", "fire8", "fire9", "fire9", "pool10"),
}


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


def stage_aliases(name: str, aliases: dict[str, str]) -> dict[str, str]:
    """The portable stage names (``STAGES``) of course model ``name`` as dotted names, given its aliases.

    >>> stage_aliases("alexnet", lecture_aliases("alexnet", net))["last_conv"]   # 'net.features.11' (relu5)
    """
    if name.startswith("efficientnet"):
        key = "efficientnet"
    elif name.startswith("vgg"):
        key = "vgg"
    else:
        key = name
    if key not in _STAGE_TABLE:
        raise ValueError(f"no stage names for {name!r}; models with stage names: {', '.join(_STAGE_TABLE)}")
    out = {}
    for stage, target in zip(STAGES, _STAGE_TABLE[key]):
        if target.endswith("_*"):  # VGG: the last ReLU of a block (relu3_3 on VGG16, relu3_4 on VGG19)
            block = target[:-1]
            target = max((a for a in aliases if a.startswith(block)), key=lambda a: int(a[len(block):]))
        out[stage] = aliases.get(target, target)
    return out
