"""Synthetic scenes with some statistics of natural images, as backgrounds for zoomed-out stills.

A video frame shows its object over a scene: edges and flat regions at many scales, textures
whose power falls with frequency. Training on stills with plain backgrounds only leaves a model
unsure of objects over such scenes. Two generators give scenes without any photographs
(Baradad et al., 2021, "Learning to See by Looking at Noise", NeurIPS, pretrain on such images):

* ``dead_leaves``: opaque discs of random colours painted over one another, their radii drawn
  from the 1/r^3 law of the scale-invariant dead-leaves model (Lee, Mumford and Huang, 2001,
  "Occlusion Models for Natural Images: A Statistical Study of a Scale-Invariant Dead Leaves
  Model", IJCV 41); a finite number of discs, so part of the frame keeps a base colour;
* ``spectral_noise``: noise whose amplitude spectrum falls as 1/f^beta, beta near 1 as in
  natural images (Field, 1987, JOSA A), its channels correlated like a photo's.

Both return one uint8 frame (1, C, H, W), C 1 or 3, drawn from torch's global generator, so a
seeded DataLoader worker gives the same scene every run.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

DISCS = 120  # discs per dead-leaves scene: about 1.2 frame-areas of paint, a third left bare
RADIUS_RANGE = (1 / 40, 1 / 3)  # disc radii, fractions of the short side (at least 1 px)
LIGHTNESS_SPREAD = (20.0, 80.0)  # grey levels: std of a disc's lightness around the scene's
SPECTRAL_BETA = (0.8, 1.6)  # amplitude exponent: 0.8 grainy (gravel, grass) - 1.6 cloudy
SPECTRAL_CONTRAST = (20.0, 70.0)  # grey levels: std of each field before the channels mix


def dead_leaves(channels: int, height: int, width: int, discs: int = DISCS) -> Tensor:
    """uint8 (1, channels, height, width) dead-leaves scene (module docstring): ``discs``
    discs (``disc_radii``) centred uniformly in the frame, each covering the ones before it
    (``paint_discs``), coloured by ``_disc_colours``; pixels no disc covers keep the base
    colour."""
    radii = disc_radii(discs, min(height, width))
    cy, cx = torch.rand(discs) * height, torch.rand(discs) * width
    top = paint_discs(cy, cx, radii, height, width)
    return _disc_colours(channels, discs)[:, top].round_().to(torch.uint8)[None]


def disc_radii(discs: int, side: int) -> Tensor:
    """(discs,) float32 radii in px, p(r) ~ r^-3 on ``RADIUS_RANGE`` of ``side`` (the lower
    end at least 1 px), by inverse-CDF sampling: F(r) = (a^-2 - r^-2) / (a^-2 - b^-2)."""
    r_min, r_max = max(1.0, side * RADIUS_RANGE[0]), side * RADIUS_RANGE[1]
    u = torch.rand(discs)
    return (r_min ** -2 - u * (r_min ** -2 - r_max ** -2)) ** -0.5


def paint_discs(cy: Tensor, cx: Tensor, radii: Tensor, height: int, width: int) -> Tensor:
    """(height, width) int64 index, from 1, of the last disc that covers each pixel (0: none).

    Disc k covers pixel (y, x) when (y - cy[k])^2 + (x - cx[k])^2 <= radii[k]^2 in float32.
    Each disc is painted in its bounding box, in numpy (small arrays: torch's per-call overhead
    would be most of the time); the box is one pixel wider than the disc on every side, so
    rounding can never leave a covered pixel outside it.
    """
    top = np.zeros((height, width), dtype=np.int64)
    rows, cols = np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32)
    centres = zip(cy.tolist(), cx.tolist(), radii.tolist(), strict=True)
    for k, (y, x, r) in enumerate(centres, start=1):
        y0, y1 = max(0, math.floor(y - r)), min(height, math.ceil(y + r) + 1)
        x0, x1 = max(0, math.floor(x - r)), min(width, math.ceil(x + r) + 1)
        dy, dx = rows[y0:y1, None] - np.float32(y), cols[None, x0:x1] - np.float32(x)
        top[y0:y1, x0:x1][dy * dy + dx * dx <= np.float32(r * r)] = k
    return torch.from_numpy(top)


def _disc_colours(channels: int, discs: int) -> Tensor:
    """(channels, discs + 1) float colours in [0, 255], column 0 the scene's base colour: a
    disc strays from the base mostly in lightness (one offset for all channels, std drawn from
    ``LIGHTNESS_SPREAD``) and a third as much in chroma, as the surfaces of one scene do."""
    base = torch.rand(channels, 1) * 255
    spread = float(torch.empty(()).uniform_(*LIGHTNESS_SPREAD))
    colours = base + torch.randn(1, discs + 1) * spread + torch.randn(channels, discs + 1) * spread / 3
    colours[:, 0] = base[:, 0]
    return colours.clamp_(0, 255)


def spectral_noise(channels: int, height: int, width: int) -> Tensor:
    """uint8 (1, channels, height, width) noise with a 1/f^beta amplitude spectrum (module
    docstring), beta uniform in ``SPECTRAL_BETA``; ``channels`` 1 or 3.

    Three fields of random phase (frequencies in cycles per pixel; the zero frequency's amplitude
    clamped to the lowest nonzero one's, not infinite) are normalised to zero mean and unit
    std, then mixed by a random matrix with a strong diagonal (channels correlated, not equal;
    a channel's std ends 0.5-1.2 times the field's), scaled by a contrast in
    ``SPECTRAL_CONTRAST`` grey levels around a random base colour.
    """
    if channels not in (1, 3):
        raise ValueError(f"spectral_noise makes 1 or 3 channels, got {channels}")
    beta = float(torch.empty(()).uniform_(*SPECTRAL_BETA))
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    radius = (fy ** 2 + fx ** 2).sqrt().clamp_(min=1.0 / max(height, width))
    phase = torch.rand(3, height, fx.shape[1]) * 2 * math.pi
    spectrum = radius ** -beta * torch.polar(torch.ones_like(phase), phase)
    field = torch.fft.irfft2(spectrum, s=(height, width))
    std = field.std((1, 2), keepdim=True).nan_to_num_(1.0).clamp_(min=1e-6)  # NaN for 1 px
    field = (field - field.mean((1, 2), keepdim=True)) / std
    mix = 0.5 * torch.eye(3) + 0.5 * torch.rand(3, 3)
    field = torch.einsum("ij,jhw->ihw", mix, field)[:channels]
    base = torch.rand(channels, 1, 1) * 255
    contrast = float(torch.empty(()).uniform_(*SPECTRAL_CONTRAST))
    return (base + field * contrast).clamp_(0, 255).round_().to(torch.uint8)[None]
