"""Cross-modal augmentations: zoom-out keeps the whole object, everything is clip-consistent."""

from __future__ import annotations

import pytest
import torch

from xmodal.data.domain import RandomPlacement, VideoLikeDegradation
from xmodal.data.transforms import resize_to, train_transform


def test_zoom_out_keeps_the_whole_clip_smaller_and_inside() -> None:
    torch.manual_seed(0)
    place = RandomPlacement(scale=(0.4, 0.8), p=1.0)
    clip = torch.randint(0, 256, (1, 3, 96, 120), dtype=torch.uint8).expand(4, 3, 96, 120).clone()
    corners, backgrounds = set(), set()
    for _ in range(60):
        state = torch.get_rng_state()
        out = place(clip)
        after = torch.get_rng_state()
        torch.set_rng_state(state)  # replay the draws: p first, then the placement
        torch.rand(())
        new_h, new_w, top, left = place.get_params(96, 120)
        torch.set_rng_state(after)
        assert 0.4 * 96 - 1 <= new_h <= 0.8 * 96 + 1 and abs(new_w / new_h - 120 / 96) < 0.05
        assert top >= 0 and left >= 0 and top + new_h <= 96 and left + new_w <= 120
        assert out.shape == clip.shape and out.dtype == torch.uint8
        # the whole clip, shrunk, is on the canvas at that place
        assert torch.equal(out[..., top:top + new_h, left:left + new_w],
                           resize_to(clip, new_h, new_w))
        assert all(torch.equal(out[0], frame) for frame in out[1:])  # one draw per clip
        corners.add((top < 20, left < 20))
        backgrounds.add(tuple(out[0, :, 0, 0].tolist()) if (top, left) != (0, 0) else None)
    assert len(corners) == 4 and len(backgrounds) > 20


def test_degradations_change_pixels_but_not_frames_relative_to_each_other() -> None:
    torch.manual_seed(2)
    degrade = VideoLikeDegradation(p=1.0)
    clip = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8).expand(5, 3, 64, 64).clone()
    out = degrade(clip)
    assert not torch.equal(out, clip)
    assert all(torch.equal(out[0], frame) for frame in out[1:])


@pytest.mark.parametrize("preset", ["light", "strong", "cross"])
def test_presets_are_clip_consistent(preset: str) -> None:
    torch.manual_seed(3)
    transform = train_transform(64, preset)
    clip = torch.randint(0, 256, (1, 3, 80, 100), dtype=torch.uint8).expand(6, 3, 80, 100).clone()
    for _ in range(10):
        out = transform(clip)
        assert out.shape == (6, 3, 64, 64)
        assert all(torch.equal(out[0], frame) for frame in out[1:])


def test_cross_makes_stills_video_like_and_leaves_clips_to_the_crop() -> None:
    """A uniform grey frame stays uniform under crop and flip; a zoom-out or a degradation
    brings other values. Stills (T = 1) get them, clips (T > 1) never do."""
    torch.manual_seed(4)
    transform = train_transform(48, "cross")
    grey = torch.full((1, 3, 60, 80), 200, dtype=torch.uint8)
    stills = [transform(grey) for _ in range(30)]
    clips = [transform(grey.expand(3, 3, 60, 80).clone()) for _ in range(30)]
    assert all(out.shape == (1, 3, 48, 48) for out in stills)
    assert sum(not bool((out == 200).all()) for out in stills) >= 10
    assert all(bool((out == 200).all()) and out.shape == (3, 3, 48, 48) for out in clips)
