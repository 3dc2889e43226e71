"""EfficientNet-Lite0/1/2 in plain torch, parameter for parameter timm's `tf_efficientnet_lite{0,1,2}`.

The submission may import only what the AutoDL platform provides (TensorFlow, torch,
torchvision, NumPy, scikit-learn), so the Lite0 backbone cannot come from timm at run time. This
module builds the same networks with the same state-dict keys, so weight files converted for timm
(`python -m learner.weights convert-lite VARIANT`) load unchanged;
`tests/test_learner/test_efficientnet_lite.py` checks the outputs against timm's model on the same input.

Lite0 is MobileNetV2-like: ReLU6, no squeeze-excitation, BatchNorm eps 1e-3 and TensorFlow "same"
padding (asymmetric for strided convolutions), a 32-channel stem and a 1280-channel head.
timm's built-in dropout before the classifier is left out: our head brings its own.
Lite1 and Lite2 scale the stages' depth (1.1, 1.2) and Lite2 their width (1.1); the Lite family keeps the
stem, the first and the last stage's depth and the head fixed.
"""

from __future__ import annotations

import math

from learner import _triton_guard  # noqa: F401  (before torch)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

__all__ = ["EfficientNetLite", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "LITE_STAGES",
           "LITE0_STAGES"]

BN_EPS = 1e-3  # TensorFlow's default, used by the original weights
# (block kind, repeats, kernel, stride, expansion, output channels) per stage
LITE0_STAGES = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
LITE1_STAGES = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 3, 3, 2, 6, 24),
    ("ir", 3, 5, 2, 6, 40),
    ("ir", 4, 3, 2, 6, 80),
    ("ir", 4, 5, 1, 6, 112),
    ("ir", 5, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
LITE2_STAGES = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 3, 3, 2, 6, 24),
    ("ir", 3, 5, 2, 6, 48),
    ("ir", 4, 3, 2, 6, 88),
    ("ir", 4, 5, 1, 6, 120),
    ("ir", 5, 5, 2, 6, 208),
    ("ir", 1, 3, 1, 6, 352),
)
LITE_STAGES = {"lite0": LITE0_STAGES, "lite1": LITE1_STAGES, "lite2": LITE2_STAGES}


class _SameConv2d(nn.Conv2d):
    """A bias-free convolution with TensorFlow "same" padding.

    Stride 1 pads symmetrically (a static padding); a strided convolution pads the input by
    what "same" needs for its actual size, the extra pixel going right and bottom, as TF does.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        self.dynamic = stride > 1
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=0 if self.dynamic else (kernel_size - 1) // 2, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic:
            ih, iw = x.shape[-2:]
            k, s = self.kernel_size[0], self.stride[0]
            pad_h = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
            pad_w = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
            if pad_h or pad_w:
                x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return super().forward(x)


class _BatchNormAct(nn.BatchNorm2d):
    """BatchNorm followed by ReLU6 (or nothing): the keys of a plain BatchNorm2d."""

    def __init__(self, channels: int, act: bool = True):
        super().__init__(channels, eps=BN_EPS)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        return F.relu6(x) if self.act else x


class _DepthwiseSeparable(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int):
        super().__init__()
        self.conv_dw = _SameConv2d(in_channels, in_channels, kernel, stride, groups=in_channels)
        self.bn1 = _BatchNormAct(in_channels)
        self.conv_pw = _SameConv2d(in_channels, out_channels, 1)
        self.bn2 = _BatchNormAct(out_channels, act=False)
        self.skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv_pw(self.bn1(self.conv_dw(x))))
        return x + y if self.skip else y


class _InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = in_channels * expansion
        self.conv_pw = _SameConv2d(in_channels, mid, 1)
        self.bn1 = _BatchNormAct(mid)
        self.conv_dw = _SameConv2d(mid, mid, kernel, stride, groups=mid)
        self.bn2 = _BatchNormAct(mid)
        self.conv_pwl = _SameConv2d(mid, out_channels, 1)
        self.bn3 = _BatchNormAct(out_channels, act=False)
        self.skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn1(self.conv_pw(x))
        y = self.bn2(self.conv_dw(y))
        y = self.bn3(self.conv_pwl(y))
        return x + y if self.skip else y


class EfficientNetLite(nn.Module):
    """Stem -> stages of blocks -> 1x1 head -> global average pool -> `classifier`."""

    def __init__(self, stages: tuple[tuple[str, int, int, int, int, int], ...] = LITE0_STAGES, *,
                 stem_channels: int = 32, head_channels: int = 1280, num_classes: int = 1000):
        super().__init__()
        self.conv_stem = _SameConv2d(3, stem_channels, 3, stride=2)
        self.bn1 = _BatchNormAct(stem_channels)
        channels = stem_channels
        blocks = []
        for kind, repeats, kernel, stride, expansion, out_channels in stages:
            stage = []
            for i in range(repeats):
                s = stride if i == 0 else 1
                if kind == "ds":
                    stage.append(_DepthwiseSeparable(channels, out_channels, kernel, s))
                else:
                    stage.append(_InvertedResidual(channels, out_channels, kernel, s, expansion))
                channels = out_channels
            blocks.append(nn.Sequential(*stage))
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = _SameConv2d(channels, head_channels, 1)
        self.bn2 = _BatchNormAct(head_channels)
        self.num_features = head_channels
        self.classifier: nn.Module = nn.Linear(head_channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """He-normal convolutions (fan-out, per group) and a uniform classifier, as TF's EfficientNet."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.weight.size(0))
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv_stem(x))
        x = self.blocks(x)
        return self.bn2(self.conv_head(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean((2, 3))
        return self.classifier(x)


def efficientnet_lite0(num_classes: int = 1000) -> EfficientNetLite:
    """EfficientNet-Lite0 (4.7 M parameters with the 1000-class classifier)."""
    return EfficientNetLite(LITE0_STAGES, num_classes=num_classes)


def efficientnet_lite1(num_classes: int = 1000) -> EfficientNetLite:
    """EfficientNet-Lite1 (5.4 M parameters with the 1000-class classifier; native side 240)."""
    return EfficientNetLite(LITE1_STAGES, num_classes=num_classes)


def efficientnet_lite2(num_classes: int = 1000) -> EfficientNetLite:
    """EfficientNet-Lite2 (6.1 M parameters with the 1000-class classifier; native side 260)."""
    return EfficientNetLite(LITE2_STAGES, num_classes=num_classes)
