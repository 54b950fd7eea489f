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
from xmodal.data.resize import shorter_side_shape  # noqa: F401 - also imported from here

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


def resize_shorter_side(clip: Tensor, size: int) -> Tensor:
    """torchvision's ``v2.Resize(size, antialias=True)`` for (..., C, H, W) uint8 clips, pixel
    for pixel (tested), from torch alone: importing torchvision costs over 2 s of start-up."""
    height, width = clip.shape[-2:]
    return resize_to(clip, *shorter_side_shape(height, width, size))


def resize_to(clip: Tensor, height: int, width: int) -> Tensor:
    """(..., C, H, W) -> (..., C, height, width), antialiased bilinear as torchvision resizes."""
    if tuple(clip.shape[-2:]) == (height, width):
        return clip
    flat = clip.reshape(-1, *clip.shape[-3:])
    out = torch.nn.functional.interpolate(flat, size=(height, width), mode="bilinear",
                                          antialias=True, align_corners=False)
    return out.reshape(*clip.shape[:-2], height, width)


def center_crop(clip: Tensor, size: int) -> Tensor:
    """torchvision's ``v2.CenterCrop(size)`` for clips at least ``size`` on each side."""
    height, width = clip.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"cannot centre-crop {size}x{size} from {height}x{width}")
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return clip[..., top:top + size, left:left + size]


def eval_transform(size: int, resize_size: int | None = None) -> ClipTransform:
    """Resize the shorter side to ``resize_size`` (default ``round(size / 0.875)``), centre-crop ``size``."""
    from torchvision.transforms import v2

    resize_size = resize_size if resize_size is not None else round(size / CROP_PCT)
    return v2.Compose([v2.Resize(resize_size, antialias=True), v2.CenterCrop(size)])


def resizes_clips_like_evaluation(preset: str, frames: int) -> bool:
    """Whether a preset's training transform starts a clip of ``frames`` frames with the
    evaluation resize ("none"; "cross" for T > 1, which crops a 1-frame clip like a still),
    so frames decoded straight to that size give the same pixels. "light" and "strong" crop at
    random from the full frames."""
    return preset == "none" or (preset == "cross" and frames > 1)


def clip_short_side(size: int, preset: str, frames: int) -> int | None:
    """The shorter side (px) training clips of ``frames`` frames can be decoded to for a crop of
    ``size``, or None when the preset needs the full frames (resizes_clips_like_evaluation)."""
    return round(size / CROP_PCT) if resizes_clips_like_evaluation(preset, frames) else None


def train_transform(size: int, preset: str = "cross") -> ClipTransform:
    """Training augmentation: "none", "light" (crop + flip), "strong" (+ colour,
    TrivialAugment) or "cross" (for a model that must hold across stills and clips,
    xmodal.data.domain: stills become video-like, clips still-like; see ``cross_transform``).

    "none" equals the evaluation transform, for runs that must see exactly what inference sees.
    """
    from torchvision.transforms import v2

    if preset not in AUGMENT_PRESETS:
        raise ValueError(f"augment preset must be one of {', '.join(AUGMENT_PRESETS)}; got {preset!r}")
    if preset == "none":
        return eval_transform(size)
    if preset == "cross":
        return cross_transform(size)
    steps: list[Callable] = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
    if preset == "strong":
        steps += [v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05),
                  v2.TrivialAugmentWide()]
    return v2.Compose(steps)


# RandomResizedCrop's area range in "cross": ImageNet's (0.08, 1) is made for training from
# scratch on large photos; few-shot fine-tuning on small objects keeps at least a quarter.
CROSS_CROP_SCALE = (0.25, 1.0)
# Before a zoom-out, only a mild crop (area 0.64-1: each side keeps at least 0.64 of the
# still's, and torchvision falls back to a centre crop), so the middle of the still stays in and
# the object shrunk onto a scene is nearly whole, as in a video frame.
ZOOM_OUT_CROP_SCALE = (0.64, 1.0)


def cross_transform(size: int) -> ClipTransform:
    """A still (T = 1) is made video-like: half the time zoomed in (a random resized crop, area
    0.25-1), half the time zoomed out nearly whole (a mild crop, area 0.64-1, then shrunk onto a varied
    background, ``RandomPlacement``); then flipped and degraded (blur, noise, JPEG). Zooming out
    a still that a crop has already cut measured worse (tools/bench_accuracy.py, stills-trained,
    10 per class, 3 seeds: stills / clips 0.839 / 0.375 digits, 0.753 / 0.540 Fashion-MNIST
    with the crop always before the zoom-out; 0.881 / 0.470 and 0.750 / 0.583 with the choice;
    docs/accuracy.md). A clip (T > 1) is resized and centre-cropped as evaluation does, and
    flipped: a video's frames already vary, and cropping them measured worse
    (tools/bench_accuracy.py --quick, clips-trained, 10 per class: Fashion-MNIST stills / clips
    0.43 / 0.57 without augmentation, 0.41 / 0.43 with crop and flip, 0.38 / 0.43 with the still
    steps too; digits 0.51 / 0.70, 0.57 / 0.47, 0.49 / 0.59)."""
    from torchvision.transforms import v2

    from xmodal.data.domain import VideoLikeDegradation

    zoom_in = v2.RandomResizedCrop(size, scale=CROSS_CROP_SCALE, antialias=True)
    zoom_out = zoom_out_transform(size)
    still = v2.Compose([v2.RandomChoice([zoom_in, zoom_out]), v2.RandomHorizontalFlip(),
                        VideoLikeDegradation()])
    clip_steps = v2.Compose([eval_transform(size), v2.RandomHorizontalFlip()])

    def transform(clip: Tensor) -> Tensor:
        return still(clip) if clip.shape[0] == 1 else clip_steps(clip)

    return transform


def zoom_out_transform(size: int) -> ClipTransform:
    """``cross``'s zoom-out: a mild random resized crop (area ``ZOOM_OUT_CROP_SCALE``) to
    ``size``, then always ``RandomPlacement`` (shrunk to 0.4-1 of the side onto a new
    background, cut out of a plain backdrop half the time). (T, C, H, W) uint8 in, (T, C,
    size, size) out."""
    from torchvision.transforms import v2

    from xmodal.data.domain import RandomPlacement

    return v2.Compose([v2.RandomResizedCrop(size, scale=ZOOM_OUT_CROP_SCALE, antialias=True),
                       RandomPlacement(p=1.0)])


BatchMixer = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def batch_mixer(mixup: float, cutmix: float, num_classes: int) -> BatchMixer | None:
    """MixUp and/or CutMix (torchvision.transforms.v2) for uint8 clip batches, or None if both are 0.

    The returned function maps (B, T, C, H, W) uint8 clips and (B,) labels to float clips in
    [0, 1] and (B, K) soft labels. The frames of a clip are mixed with one coefficient and cut
    with one box: T is folded into the channels for the call, so every frame gets the same draw.
    """
    from torchvision.transforms import v2

    made = [cls(alpha=alpha, num_classes=num_classes)
            for alpha, cls in ((mixup, v2.MixUp), (cutmix, v2.CutMix)) if alpha > 0]
    if not made:
        return None
    mix = made[0] if len(made) == 1 else v2.RandomChoice(made)

    def apply(clips: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        b, t, c, h, w = clips.shape
        images = clips.reshape(b, t * c, h, w).float().div_(255)
        images, soft = mix(images, labels)
        return images.reshape(b, t, c, h, w), soft

    return apply
