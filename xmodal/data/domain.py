"""Augmentations that carry a model across stills and clips.

A photo shows its object large, centred and sharp; a frame of a video shows it smaller, off
centre, over a scene, blurred by motion, noisy and compressed. ``RandomPlacement`` zooms out
(the object at a random smaller scale and place over a varied background, a synthetic scene
among them; from a plain studio backdrop, at times cut out) and ``VideoLikeDegradation``
blurs, adds sensor noise and JPEG-compresses, each drawn once per clip so every frame of a
clip agrees. RandomResizedCrop's zoom-in covers the other direction (clips to stills).
Inputs and outputs are uint8 clips (T, C, H, W).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from xmodal.data.scenes import dead_leaves, spectral_noise
from xmodal.data.transforms import resize_to


class RandomPlacement:
    """With probability ``p``, shrink the clip to ``scale`` (a range of side fractions) and paste
    it at a uniform random position onto a background of the same size, one of five kinds
    drawn evenly: a flat random colour, noise around one, the clip itself stretched and blurred
    (context without its detail), or a synthetic scene with some of natural images' statistics
    (dead leaves or 1/f noise, ``xmodal.data.scenes``; one frame for the whole clip, a static
    scene).
    Of the clips placed, a share ``matte_p`` that show an object on a plain studio backdrop (a
    product shot, a scan) are pasted through its matte (``plain_background_matte``), so the
    object, not its rectangle, lies on the new background, as an object in a video lies on its
    scene; other clips are pasted whole. Inputs are uint8 (T, C, H, W); the matte follows the
    first frame, as for the stills ``cross`` places.

    Like torchvision's ``RandomZoomOut`` (SSD's "zoom out" augmentation, Liu et al., 2016) with
    varied backgrounds instead of one fill value, so a model does not learn a border colour; the
    matte stands in for the object masks of cut-paste augmentation (Dwibedi et al., 2017;
    Ghiasi et al., 2021).
    """

    def __init__(self, scale: tuple[float, float] = (0.4, 1.0), p: float = 0.5,
                 matte_p: float = 0.5) -> None:
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must be a range inside (0, 1], got {scale}")
        if not 0 <= matte_p <= 1:
            raise ValueError(f"matte_p must be a probability, got {matte_p}")
        self.scale, self.p, self.matte_p = scale, p, matte_p

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
        small = resize_to(clip, new_h, new_w)
        alpha = (plain_background_matte(small)
                 if self.matte_p > 0 and torch.rand(()) < self.matte_p else None)
        region = canvas[..., top:top + new_h, left:left + new_w]
        if alpha is not None:  # the object alone over the new background, its photo's backdrop gone
            small = (alpha * small + (1 - alpha) * region).round_().to(canvas.dtype)
        region.copy_(small)
        return canvas

    @staticmethod
    def _background(clip: Tensor) -> Tensor:
        t, c, h, w = clip.shape
        kind = int(torch.randint(0, 5, ()))
        # kinds 3 and 4 first: 0 and 1 share the colour drawn below
        if kind == 3:  # a scene: occluding shapes at many scales (xmodal.data.scenes)
            return dead_leaves(c, h, w).expand(t, c, h, w).clone()
        if kind == 4:  # a scene's texture: 1/f noise
            return spectral_noise(c, h, w).expand(t, c, h, w).clone()
        colour = torch.randint(0, 256, (1, c, 1, 1)).float()
        if kind == 0:  # a flat colour
            return colour.expand(t, c, h, w).to(torch.uint8).clone()
        if kind == 1:  # noise around a colour (one pattern for the whole clip: a static scene)
            noise = torch.randn(1, c, h, w) * torch.empty(()).uniform_(5, 40)
            return (colour + noise).clamp_(0, 255).to(torch.uint8).expand(t, c, h, w).clone()
        small = resize_to(clip, max(1, h // 16), max(1, w // 16))  # the clip's own colours
        return resize_to(small, h, w).clone()


# A photo's backdrop is "plain" when most of its border (PLAIN_BORDER_SHARE of a 2-px ring)
# lies within PLAIN_LEVELS (0-255, in every channel) of one colour, and that colour is a studio
# backdrop's: near-neutral (channels within NEUTRAL_SPREAD) and dark or light (a channel mean
# within BACKDROP_LEVELS of 0 or 255), as product shots, scans and MNIST-like sets have. A mid
# grey or coloured border is more often a crop inside the object itself.
PLAIN_BORDER_SHARE = 0.6
PLAIN_LEVELS = 16.0
NEUTRAL_SPREAD = 24.0
BACKDROP_LEVELS = 48.0
MATTE_COVERAGE = (0.05, 0.9)  # the matte's mean outside this: nothing sensible to cut out
MATTE_SIDE = 64  # px: larger frames are matted at this longer side, the matte scaled up


def plain_background_matte(clip: Tensor) -> Tensor | None:
    """Soft matte (1, 1, H, W) in [0, 1] of the object on a plain backdrop, or None.

    ``clip`` is uint8 (T, C, H, W); the matte comes from its first frame (for the stills
    ``RandomPlacement`` gets in ``cross``, the only frame). The backdrop's colour is the median
    of the 2-px border; None when it is not a plain studio backdrop (see ``PLAIN_BORDER_SHARE``)
    or the matte covers too little or too much (``MATTE_COVERAGE``). The backdrop is what lies
    within ``PLAIN_LEVELS`` of that colour AND is connected to the border, so an object's inner
    parts of the backdrop's colour (a white shirt's body on white, the inside of a "0") stay
    opaque: a filled silhouette. Its edge is eroded by one pixel and feathered by a 3x3 mean,
    so no fringe of the old backdrop survives and the cut-out has soft edges. Frames larger
    than ``MATTE_SIDE`` are matted at that size (a few ms) and the matte resized bilinearly.
    """
    h, w = clip.shape[-2:]
    if min(h, w) < 8:
        return None
    scale = min(1.0, MATTE_SIDE / max(h, w))
    frame = resize_to(clip[0], max(8, round(h * scale)), max(8, round(w * scale))).float()
    backdrop = _plain_backdrop_colour(frame)
    if backdrop is None:
        return None
    near = (frame - backdrop[:, None, None]).abs().amax(0) <= PLAIN_LEVELS  # (h, w)
    pool = torch.nn.functional
    solid = (~_connected_to_border(near)).float()[None, None]
    eroded = -pool.max_pool2d(-solid, 3, stride=1, padding=1)
    alpha = pool.avg_pool2d(eroded, 3, stride=1, padding=1, count_include_pad=False)
    if not MATTE_COVERAGE[0] <= float(alpha.mean()) <= MATTE_COVERAGE[1]:
        return None
    return pool.interpolate(alpha, size=(h, w), mode="bilinear") if scale < 1 else alpha


def _plain_backdrop_colour(frame: Tensor) -> Tensor | None:
    """(C,) median colour of a float (C, H, W) frame's 2-px border if it is a plain studio
    backdrop (module constants), else None."""
    c = frame.shape[0]
    border = torch.cat([frame[:, :2].reshape(c, -1), frame[:, -2:].reshape(c, -1),
                        frame[:, :, :2].reshape(c, -1), frame[:, :, -2:].reshape(c, -1)], 1)
    colour = border.median(dim=1).values  # (C,)
    near = (border - colour[:, None]).abs().amax(0) <= PLAIN_LEVELS
    level = float(colour.mean())
    if (float(near.float().mean()) < PLAIN_BORDER_SHARE
            or float(colour.max() - colour.min()) > NEUTRAL_SPREAD
            or BACKDROP_LEVELS < level < 255 - BACKDROP_LEVELS):
        return None
    return colour


def _connected_to_border(mask: Tensor) -> Tensor:
    """The pixels of a bool (H, W) ``mask`` 8-connected to the image border through ``mask``:
    a flood fill from the border by repeated 3x3 dilation inside the mask, until it stops."""
    inside = mask.float()[None, None]
    reach = torch.zeros_like(inside)
    reach[..., 0, :], reach[..., -1, :] = inside[..., 0, :], inside[..., -1, :]
    reach[..., :, 0], reach[..., :, -1] = inside[..., :, 0], inside[..., :, -1]
    while True:
        grown = torch.nn.functional.max_pool2d(reach, 3, stride=1, padding=1) * inside
        if torch.equal(grown, reach):
            return reach[0, 0].bool()
        reach = grown


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
