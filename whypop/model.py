"""The classifier: build, load and save torchvision models; the shared preprocessing.

Spectrograms are one-channel uint8 images; the network sees them replicated to three
channels and normalised with ImageNet's statistics (what the pretrained weights
expect, kept for from-scratch models so that both read inputs the same way). This
preprocessing is defined once here and used by training, extraction and the app.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from whypop.errors import ConfigError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHECKPOINT_NAME = "model.pt"


def resolve_device(name: str = "auto") -> "torch.device":
    """'auto' -> CUDA when present, CPU otherwise."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA device is available (use auto or cpu)")
    return torch.device(name)


def classification_models() -> list[str]:
    """Names of torchvision's classification architectures."""
    from torchvision import models

    return sorted(models.list_models(module=models))


def build_model(arch: str, num_classes: int, pretrained: str = "none", weights_file: str = "") -> "torch.nn.Module":
    """A torchvision classifier with a new ``num_classes`` head.

    pretrained="imagenet" loads ImageNet weights from ``weights_file`` or torch's local
    cache (never downloads: this must work offline); otherwise fails saying where to put
    them. pretrained="none" starts from random weights.
    """
    import torch
    from torchvision import models

    names = classification_models()
    if arch not in names:
        raise ConfigError(f"unknown model {arch!r}: torchvision classification models are {', '.join(names)}")
    if num_classes < 2:
        raise InputError(f"a classifier needs at least 2 genres, got {num_classes}")
    model = models.get_model(arch, weights=None)
    if pretrained == "imagenet":
        model.load_state_dict(_imagenet_state(arch, weights_file))
    elif pretrained != "none":
        raise ConfigError(f"pretrained={pretrained!r}: allowed are 'imagenet', 'none'")
    _replace_head(model, num_classes)
    return model.to(memory_format=torch.channels_last)


def _imagenet_state(arch: str, weights_file: str) -> dict:
    import torch
    from torchvision import models

    weights = models.get_model_weights(arch).DEFAULT
    if weights_file:
        path = Path(weights_file).expanduser()
        if not path.is_file():
            raise InputError(f"ImageNet weights file not found: {path}")
    else:
        filename = Path(weights.url).name
        path = Path(torch.hub.get_dir()) / "checkpoints" / filename
        if not path.is_file():
            raise InputError(
                f"ImageNet weights for {arch} are not available offline: put {filename} in "
                f"{path.parent} (from {weights.url}) or set train.weights_file, or train from "
                f"scratch with train.pretrained = \"none\""
            )
    state = torch.load(path, map_location="cpu", weights_only=True)
    log.info("loaded ImageNet weights for %s from %s", arch, path)
    return state


def _replace_head(model: "torch.nn.Module", num_classes: int) -> None:
    import torch.nn as nn

    if isinstance(getattr(model, "fc", None), nn.Linear):
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        return
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, nn.Linear):
        model.classifier = nn.Linear(classifier.in_features, num_classes)
        return
    if isinstance(classifier, nn.Sequential):
        for i in range(len(classifier) - 1, -1, -1):
            if isinstance(classifier[i], nn.Linear):
                classifier[i] = nn.Linear(classifier[i].in_features, num_classes)
                return
        for i in range(len(classifier) - 1, -1, -1):  # SqueezeNet: a 1x1 convolution head
            if isinstance(classifier[i], nn.Conv2d):
                old = classifier[i]
                classifier[i] = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride)
                return
    if isinstance(getattr(model, "head", None), nn.Linear):  # Swin
        model.head = nn.Linear(model.head.in_features, num_classes)
        return
    heads = getattr(model, "heads", None)
    if isinstance(heads, nn.Sequential) and isinstance(getattr(heads, "head", None), nn.Linear):
        heads.head = nn.Linear(heads.head.in_features, num_classes)
        return
    raise ConfigError(f"cannot find the classification head of {type(model).__name__} to replace")


def layer_names(model: "torch.nn.Module") -> list[str]:
    """Every named submodule (valid bottleneck layers for ACE), in forward order."""
    return [name for name, _ in model.named_modules() if name]


def get_layer(model: "torch.nn.Module", name: str) -> "torch.nn.Module":
    modules = dict(model.named_modules())
    if name not in modules or not name:
        convs = [n for n, m in model.named_modules() if type(m).__name__ in ("Conv2d", "BasicBlock", "Bottleneck", "Sequential") and n]
        raise ConfigError(f"unknown layer {name!r}; valid layers include: {', '.join(convs[-30:])}")
    return modules[name]


def preprocess(images: np.ndarray | "torch.Tensor", device: "torch.device | str" = "cpu") -> "torch.Tensor":
    """uint8 spectrograms (N, H, W) -> normalised float tensor (N, 3, H, W), channels_last."""
    import torch

    x = torch.as_tensor(images)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise InputError(f"expected spectrograms shaped (N, H, W), got {tuple(x.shape)}")
    x = x.to(device=device, dtype=torch.float32, non_blocking=True).div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    x = (x[:, None].expand(-1, 3, -1, -1) - mean) / std
    return x.contiguous(memory_format=torch.channels_last)


# -- checkpoints -----------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A classifier ready for inference, with what it was trained on."""

    model: "torch.nn.Module"
    arch: str
    genres: list[str]
    image_size: int
    model_id: int | None
    device: "torch.device"
    metrics: dict | None = None


def save_checkpoint(path: Path, model: "torch.nn.Module", arch: str, genres: list[str], image_size: int, extra: dict | None = None) -> None:
    """The state dict plus what is needed to rebuild it (arch, genres, image size, config)."""
    import torch

    payload: dict[str, Any] = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "arch": arch,
        "genres": list(genres),
        "image_size": int(image_size),
        **(extra or {}),
    }
    tmp = Path(path).with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint_file(path: str | Path, map_location: str = "cpu") -> dict:
    import torch

    try:
        payload = torch.load(Path(path), map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise InputError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # torch raises many types for a bad file
        raise InputError(f"cannot read checkpoint {path}: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(payload, dict):
        raise InputError(f"checkpoint {path} is not a dict (expected a state dict or {{'state_dict', 'arch'}})")
    return payload


def model_from_state(arch: str, state: dict, num_classes: int) -> "torch.nn.Module":
    """Build ``arch`` with ``num_classes`` outputs and load ``state``; clear errors on mismatch."""
    return state_for_arch(arch, state, num_classes)


def state_for_arch(arch: str, state: dict, num_classes: int, source: str = "checkpoint") -> "torch.nn.Module":
    """``arch`` with ``num_classes`` outputs holding ``state``; an InputError names any mismatch.

    Checks, in order: the state is a dict of tensors (a ``module.`` prefix from
    DataParallel is dropped), its keys are the architecture's (with a guess of the
    architecture it does fit, for ResNets), the head has ``num_classes`` outputs, and
    every tensor has the architecture's shape.
    """
    import torch

    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{source} holds no state dict (expected a dict of tensors, or {{'state_dict', 'arch'}})")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = build_model(arch, num_classes, pretrained="none")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        guess = guess_resnet(state)
        hint = f"; it looks like {guess}: set train.arch = \"{guess}\"" if guess and guess != arch else ""
        raise InputError(
            f"{source} does not fit architecture {arch!r}: {len(missing)} missing keys "
            f"(e.g. {', '.join(missing[:3]) or '-'}), {len(unexpected)} unexpected "
            f"(e.g. {', '.join(unexpected[:3]) or '-'}){hint}"
        )
    head = _head_name(model) + ".weight"
    outputs = int(state[head].shape[0])
    if outputs != num_classes:
        raise InputError(
            f"{source} has {outputs} outputs ({head}) but the run has {num_classes} genres: "
            f"a classifier for another set of genres cannot be used here"
        )
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise InputError(f"{source} does not fit architecture {arch!r}: tensor shapes differ ({'; '.join(wrong[:3])})")
    model.load_state_dict(state)
    return model


def _head_name(model: "torch.nn.Module") -> str:
    """The final linear layer's name (SqueezeNet: its final 1x1 convolution)."""
    import torch.nn as nn

    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)][-1]


_RESNET_BLOCKS = {
    (2, 2, 2, 2, False): "resnet18", (3, 4, 6, 3, False): "resnet34", (3, 4, 6, 3, True): "resnet50",
    (3, 4, 23, 3, True): "resnet101", (3, 8, 36, 3, True): "resnet152",
}


def guess_resnet(state: dict) -> str | None:
    """The torchvision ResNet a state dict's keys describe (by blocks per stage), or None."""
    import re

    blocks: dict[int, set[int]] = {}
    for key in state:
        m = re.match(r"layer([1-4])\.(\d+)\.", key)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if sorted(blocks) != [1, 2, 3, 4]:
        return None
    bottleneck = any(k.startswith("layer1.0.conv3.") for k in state)
    return _RESNET_BLOCKS.get((*(len(blocks[i]) for i in (1, 2, 3, 4)), bottleneck))
