"""Synthetic scenes: dead leaves paint the last disc on top with radii of the 1/r^3 law, 1/f
noise has its spectrum, and the zoom-out draws both among its backgrounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmodal.data.domain import RandomPlacement
from xmodal.data.scenes import (
    RADIUS_RANGE,
    SPECTRAL_BETA,
    dead_leaves,
    disc_radii,
    paint_discs,
    spectral_noise,
)


@pytest.mark.parametrize("shape", [(64, 64), (45, 80), (9, 200), (224, 160), (1, 1), (2, 50)])
def test_each_pixel_shows_the_last_disc_that_covers_it(shape: tuple[int, int]) -> None:
    """Against the definition: every disc tested at every pixel at once, centres anywhere
    (discs partly outside the frame, or wholly), radii from under a pixel to the frame."""
    h, w = shape
    generator = torch.Generator().manual_seed(h * w)
    for _ in range(5):
        cy = torch.rand(50, generator=generator) * (h + 20) - 10
        cx = torch.rand(50, generator=generator) * (w + 20) - 10
        radii = torch.rand(50, generator=generator) * max(h, w) / 3 + 0.3
        ys = torch.arange(h, dtype=torch.float32)[None, :, None]
        xs = torch.arange(w, dtype=torch.float32)[None, None, :]
        inside = (ys - cy[:, None, None]) ** 2 + (xs - cx[:, None, None]) ** 2 <= radii[:, None, None] ** 2
        expected = (inside * torch.arange(1, 51)[:, None, None]).amax(0)
        assert torch.equal(paint_discs(cy, cx, radii, h, w), expected)


def test_disc_radii_follow_the_inverse_cube_law() -> None:
    """p(r) ~ r^-3 on [a, b]: the median is ((a^-2 + b^-2) / 2)^-1/2 and half the discs are
    under it; every radius lies in [a, b]."""
    torch.manual_seed(0)
    radii = disc_radii(20000, 240)
    a, b = 240 * RADIUS_RANGE[0], 240 * RADIUS_RANGE[1]  # 6 and 80 px
    median = ((a ** -2 + b ** -2) / 2) ** -0.5  # 8.46 px; a uniform law would put it at 43
    assert float(radii.min()) >= a - 1e-3 and float(radii.max()) <= b + 1e-3
    assert abs(float(radii.median()) - median) < 0.15
    assert abs(float((radii < 2 * a).float().mean()) - (1 - 0.25) / (1 - (a / b) ** 2)) < 0.01
    assert float(disc_radii(100, 20).min()) >= 1.0  # at least a pixel on small frames


@pytest.mark.parametrize("channels", [1, 3])
def test_dead_leaves_are_flat_discs_of_several_colours(channels: int) -> None:
    torch.manual_seed(1)
    scene = dead_leaves(channels, 90, 120)
    assert scene.shape == (1, channels, 90, 120) and scene.dtype == torch.uint8
    frame = scene[0].int()
    assert len(torch.unique(frame.reshape(channels, -1), dim=1).T) > 20
    assert float((frame[:, :, 1:] == frame[:, :, :-1]).all(0).float().mean()) > 0.8  # flat regions
    torch.manual_seed(1)
    assert torch.equal(dead_leaves(channels, 90, 120), scene)  # the global generator decides


@pytest.mark.parametrize("shape", [(128, 128), (97, 131)])
def test_spectral_noise_power_falls_as_f_to_minus_two_beta(shape: tuple[int, int]) -> None:
    """The radially averaged power spectrum of 1/f^beta amplitude noise has a log-log slope of
    -2 beta (white noise: 0), beta being the first draw after seeding."""
    h, w = shape
    for seed in range(6):
        torch.manual_seed(seed)
        beta = float(torch.empty(()).uniform_(*SPECTRAL_BETA))
        torch.manual_seed(seed)
        scene = spectral_noise(3, h, w)
        assert scene.shape == (1, 3, h, w) and scene.dtype == torch.uint8
        grey = scene[0].float().mean(0).numpy()
        power = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
        f = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
        bands = np.geomspace(2 / min(h, w), 0.25, 8)
        means = [power[(f >= lo) & (f < hi)].mean() for lo, hi in zip(bands[:-1], bands[1:], strict=True)]
        slope = np.polyfit(np.log(np.sqrt(bands[:-1] * bands[1:])), np.log(means), 1)[0]
        assert abs(slope + 2 * beta) < 0.5, (seed, beta, slope)


def test_spectral_noise_makes_grey_or_colour_frames_only() -> None:
    assert spectral_noise(1, 33, 47).shape == (1, 1, 33, 47)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        spectral_noise(4, 32, 32)


def test_zoom_out_backgrounds_include_scenes_and_stay_one_frame_per_clip() -> None:
    """Over many draws on a flat grey clip, the backgrounds include dead-leaves scenes (flat
    regions of many colours) and 1/f noise (many colours, smooth); the old kinds give one colour
    (flat, the clip blurred) or pixel noise (neighbours unrelated: a step of about 1.1 standard
    deviations). Every frame is the same."""
    torch.manual_seed(0)
    clip = torch.full((3, 3, 64, 64), 128, dtype=torch.uint8)
    leaves = smooth = 0
    for _ in range(100):
        background = RandomPlacement._background(clip)
        assert background.shape == clip.shape
        assert all(torch.equal(background[0], frame) for frame in background[1:])
        frame = background[0].int()
        colours = len(torch.unique(frame.reshape(3, -1), dim=1).T)
        same_as_right = float((frame[:, :, 1:] == frame[:, :, :-1]).all(0).float().mean())
        step = float((frame[:, :, 1:] - frame[:, :, :-1]).abs().float().mean())
        relative_step = step / max(float(frame.float().std()), 1e-3)  # white noise: about 1.1
        leaves += colours > 10 and same_as_right > 0.6
        smooth += colours > 100 and same_as_right < 0.6 and relative_step < 0.7
    assert leaves >= 10 and smooth >= 10  # a fifth each of 100 draws, give or take
