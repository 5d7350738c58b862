"""The trainable split of a classifier: a frozen part and the trainable rest.

ResNets: ``tail`` = layer4's last block (its convolutions *and* their BatchNorms, whose
statistics must follow the convolutions they normalise) + fc; ``layer4`` = all of layer4
+ fc; ``all`` = everything. The frozen part runs in eval mode (its BatchNorms use their
running statistics and are never updated) and without gradients, which is what makes
its outputs cacheable (:mod:`whypop.training.frozen_cache`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from whypop.errors import ConfigError


def autocast(device: torch.device, amp: bool):
    """float16 autocast on CUDA when ``amp``; a no-op on the CPU (bf16 there is far slower)."""
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp and device.type == "cuda")


class _ResNetRest(nn.Module):
    """The trainable end of a ResNet: some layer4 blocks, global pooling, fc."""

    def __init__(self, blocks: Sequence[nn.Module], avgpool: nn.Module, fc: nn.Module):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.avgpool = avgpool
        self.fc = fc

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.blocks(h)), 1))


@dataclass
class ModelParts:
    """A model seen as frozen part -> trainable rest (both share the model's modules)."""

    model: nn.Module
    frozen: nn.Module | None  # None when everything trains
    rest: nn.Module  # frozen output (or the image) -> logits
    trainable: str  # the setting this split implements
    description: str  # which parameters train, for the notes

    def train_mode(self) -> None:
        self.model.train()
        if self.frozen is not None:
            self.frozen.eval()  # frozen BatchNorm: running statistics, never updated

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> logits, the frozen part without gradients."""
        if self.frozen is None:
            out = self.model(x)
            return out if isinstance(out, torch.Tensor) else out.logits  # GoogLeNet/Inception aux outputs
        with torch.no_grad():
            h = self.frozen(x)
        return self.rest(h)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]


def split_model(model: nn.Module, arch: str, trainable: str) -> ModelParts:
    """Freeze all but the chosen part; ``tail``/``layer4`` need a ResNet-style model."""
    if trainable == "all":
        for p in model.parameters():
            p.requires_grad_(True)
        return ModelParts(model, None, model, "all", "all layers trainable")
    layer4 = getattr(model, "layer4", None)
    if not (isinstance(layer4, nn.Sequential) and isinstance(getattr(model, "fc", None), nn.Linear)):
        raise ConfigError(
            f"train.trainable={trainable!r} needs a ResNet-style model (layer4 + fc); {arch} has none: "
            f"use train.trainable = \"all\" or a resnet/resnext/wide_resnet architecture"
        )
    stem = [model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2, model.layer3]
    last = len(layer4) - 1
    if trainable == "tail":
        frozen = nn.Sequential(*stem, *list(layer4)[:last])
        rest = _ResNetRest([layer4[last]], model.avgpool, model.fc)
        convs = [n for n, m in layer4[last].named_children() if isinstance(m, nn.Conv2d)]
        description = (f"trainable: layer4.{last} ({', '.join(convs)} and their BatchNorms) + fc; "
                       f"everything before is frozen (BatchNorm in eval mode)")
    elif trainable == "layer4":
        frozen = nn.Sequential(*stem)
        rest = _ResNetRest(list(layer4), model.avgpool, model.fc)
        description = "trainable: layer4 + fc; everything before is frozen (BatchNorm in eval mode)"
    else:
        raise ConfigError(f"train.trainable={trainable!r}: allowed are 'tail', 'layer4', 'all'")
    for p in model.parameters():
        p.requires_grad_(False)
    for p in rest.parameters():
        p.requires_grad_(True)
    return ModelParts(model, frozen, rest, trainable, description)
