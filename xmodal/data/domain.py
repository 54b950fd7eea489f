"""Augmentations that carry a model across stills and clips.

A photo shows its object large, centred and sharp; a frame of a video shows it smaller, off
centre, blurred by motion, noisy and compressed. ``RandomPlacement`` zooms out (the object at a
random smaller scale and place over a varied background) and ``VideoLikeDegradation`` blurs, adds
sensor noise and JPEG-compresses, each drawn once per clip so every frame of a clip agrees.
RandomResizedCrop's zoom-in covers the other direction (clips to stills). Inputs and outputs are
uint8 clips (T, C, H, W).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from xmodal.data.transforms import resize_to


class RandomPlacement:
    """With probability ``p``, shrink the clip to ``scale`` (a range of side fractions) and paste
    it at a uniform random position onto a background of the same size: a flat random colour,
    noise around one, or the clip itself stretched and blurred (context without its detail).

    Like torchvision's ``RandomZoomOut`` (SSD's "zoom out" augmentation, Liu et al., 2016) with
    varied backgrounds instead of one fill value, so a model does not learn a border colour.
    """

    def __init__(self, scale: tuple[float, float] = (0.4, 1.0), p: float = 0.5) -> None:
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must be a range inside (0, 1], got {scale}")
        self.scale, self.p = scale, p

    def get_params(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(new_h, new_w, top, left) of the shrunk clip on the canvas: a log-uniform side
        fraction in ``scale``, a uniform position that keeps it whole inside the frame."""
        side = math.exp(torch.empty(()).uniform_(math.log(self.scale[0]),
                                                 math.log(self.scale[1])).item())
        new_h, new_w = max(1, round(height * side)), max(1, round(width * side))
        top = int(torch.randint(0, height - new_h + 1, ()))
        left = int(torch.randint(0, width - new_w + 1, ()))
        return new_h, new_w, top, left

    def __call__(self, clip: Tensor) -> Tensor:
        if torch.rand(()) >= self.p:
            return clip
        new_h, new_w, top, left = self.get_params(*clip.shape[-2:])
        canvas = self._background(clip)
        canvas[..., top:top + new_h, left:left + new_w] = resize_to(clip, new_h, new_w)
        return canvas

    @staticmethod
    def _background(clip: Tensor) -> Tensor:
        t, c, h, w = clip.shape
        kind = int(torch.randint(0, 3, ()))
        colour = torch.randint(0, 256, (1, c, 1, 1)).float()
        if kind == 0:  # a flat colour
            return colour.expand(t, c, h, w).to(torch.uint8).clone()
        if kind == 1:  # noise around a colour (one pattern for the whole clip: a static scene)
            noise = torch.randn(1, c, h, w) * torch.empty(()).uniform_(5, 40)
            return (colour + noise).clamp_(0, 255).to(torch.uint8).expand(t, c, h, w).clone()
        small = resize_to(clip, max(1, h // 16), max(1, w // 16))  # the clip's own colours
        return resize_to(small, h, w).clone()


class VideoLikeDegradation:
    """Each with probability ``p``: softening (down- then up-sampled by 1.5-3x, as a low-bitrate
    or upscaled video looks; 10x cheaper than a Gaussian blur of the same width), Gaussian noise
    (sigma 2-10 levels), JPEG compression (quality 30-85, with Pillow). Everything is drawn once
    per clip, the noise pattern too, so equal frames stay equal."""

    def __init__(self, p: float = 0.3) -> None:
        self.p = p

    def __call__(self, clip: Tensor) -> Tensor:
        if torch.rand(()) < self.p:
            factor = float(torch.empty(()).uniform_(1.5, 3.0))
            h, w = clip.shape[-2:]
            small = resize_to(clip, max(1, round(h / factor)), max(1, round(w / factor)))
            clip = resize_to(small, h, w)
        if torch.rand(()) < self.p:
            sigma = float(torch.empty(()).uniform_(2.0, 10.0))
            noise = torch.randn(1, *clip.shape[1:]) * sigma
            clip = (clip.float() + noise).clamp_(0, 255).to(torch.uint8)
        if torch.rand(()) < self.p:
            clip = _jpeg(clip, int(torch.randint(30, 86, ())))
        return clip


def _jpeg(clip: Tensor, quality: int) -> Tensor:
    """Every frame through a JPEG encode and decode at ``quality`` (Pillow's libjpeg)."""
    import io

    import numpy as np
    from PIL import Image

    frames = []
    for frame in clip.permute(0, 2, 3, 1).numpy():
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        frames.append(np.asarray(Image.open(buffer).convert("RGB")))
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()
