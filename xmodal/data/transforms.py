"""Clip-consistent transforms on uint8 clips shaped (T, C, H, W).

torchvision.transforms.v2 draws its random parameters once per call and
applies them to every leading dimension, so one call on a whole clip gives
one crop, one flip and one colour change for all its frames; per-frame
augmentation would make the frames of a clip disagree and blur what temporal
pooling sees. Output stays uint8: normalisation happens on the device.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from xmodal.config import AUGMENT_PRESETS

# torchvision's convention: evaluate on a centre crop of an image resized to size / 0.875.
CROP_PCT = 0.875

ClipTransform = Callable[[Tensor], Tensor]


def to_clip_tensor(frames: np.ndarray) -> Tensor:
    """(T, H, W, 3) uint8 frames as a (T, 3, H, W) uint8 tensor, the layout torchvision expects."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames shaped (T, H, W, 3), got {tuple(frames.shape)}")
    if frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames, got {frames.dtype}")
    # One copy into channels-first order; it is also writable, which torch wants (decoders may not give that).
    return torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)))


def eval_transform(size: int, resize_size: int | None = None) -> ClipTransform:
    """Resize the shorter side to ``resize_size`` (default ``round(size / 0.875)``), centre-crop ``size``."""
    from torchvision.transforms import v2

    resize_size = resize_size if resize_size is not None else round(size / CROP_PCT)
    return v2.Compose([v2.Resize(resize_size, antialias=True), v2.CenterCrop(size)])


def train_transform(size: int, preset: str = "light") -> ClipTransform:
    """Training augmentation "none", "light" (crop + flip) or "strong" (+ colour, TrivialAugment).

    "none" equals the evaluation transform, for runs that must see exactly what inference sees.
    """
    from torchvision.transforms import v2

    if preset not in AUGMENT_PRESETS:
        raise ValueError(f"augment preset must be one of {', '.join(AUGMENT_PRESETS)}; got {preset!r}")
    if preset == "none":
        return eval_transform(size)
    steps: list[Callable] = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
    if preset == "strong":
        steps += [v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05),
                  v2.TrivialAugmentWide()]
    return v2.Compose(steps)
