"""Cross-modal augmentations: zoom-out keeps the whole object, everything is clip-consistent."""

from __future__ import annotations

import pytest
import torch

from xmodal.data.domain import RandomPlacement, VideoLikeDegradation
from xmodal.data.domain import plain_background_matte as matte
from xmodal.data.transforms import resize_to, train_transform, zoom_out_transform


def test_zoom_out_keeps_the_whole_clip_smaller_and_inside() -> None:
    torch.manual_seed(0)
    place = RandomPlacement(scale=(0.4, 0.8), p=1.0, matte_p=0.0)
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


QUADRANTS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255))


def _quadrants(size: int = 64) -> torch.Tensor:
    """A still of four pure-colour quadrants (red, green, blue, white): none is black."""
    clip = torch.zeros((1, 3, size, size), dtype=torch.uint8)
    half = size // 2
    for (top, left), colour in zip(((0, 0), (0, half), (half, 0), (half, half)), QUADRANTS, strict=True):
        clip[0, :, top:top + half, left:left + half] = torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1)
    return clip


def _shows(out: torch.Tensor, colour: tuple[int, int, int]) -> bool:
    return bool(((out[0].int() - torch.tensor(colour).view(3, 1, 1)).abs().amax(0) < 30).any())


def test_cross_zooms_out_whole_stills_and_zooms_in_the_others(monkeypatch) -> None:
    """With a black scene and no degradation, an output with black pixels is a zoom-out: it must
    show all four quadrants (the still's centre is kept), however the crop fell. The others are
    zoom-ins (no scene). Before: the zoom-out shrank a crop of a quarter of the still, which
    could show two quadrants or one."""
    monkeypatch.setattr(RandomPlacement, "_background",
                        staticmethod(lambda clip: torch.zeros_like(clip)))
    monkeypatch.setattr(VideoLikeDegradation, "__call__", lambda self, clip: clip)
    torch.manual_seed(6)
    transform = train_transform(48, "cross")
    zoomed_out = 0
    for _ in range(80):
        out = transform(_quadrants())
        if bool((out == 0).all(dim=1).any()):
            zoomed_out += 1
            assert all(_shows(out, colour) for colour in QUADRANTS)
    assert 25 <= zoomed_out <= 55  # half the stills, give or take the draws


def test_zoom_out_keeps_the_still_s_centre_on_a_new_scene(monkeypatch) -> None:
    monkeypatch.setattr(RandomPlacement, "_background",
                        staticmethod(lambda clip: torch.zeros_like(clip)))
    torch.manual_seed(7)
    zoom_out = zoom_out_transform(40)
    for _ in range(40):
        out = zoom_out(_quadrants(64).expand(3, 3, 64, 64).clone())
        assert out.shape == (3, 3, 40, 40)
        assert all(_shows(out, colour) for colour in QUADRANTS)
        assert all(torch.equal(out[0], frame) for frame in out[1:])


def test_the_crop_before_a_zoom_out_keeps_the_middle_of_the_still(monkeypatch) -> None:
    """Four 4-px marks at 0.38 and 0.62 of a 64-px still's sides survive every crop of area
    0.64-1 (each side keeps 41 px or more); crops of area 0.25-1 lose some."""
    monkeypatch.setattr(RandomPlacement, "__call__", lambda self, clip: clip)  # the crop alone
    still = torch.full((1, 3, 64, 64), 128, dtype=torch.uint8)
    for (top, left), colour in zip(((24, 24), (24, 36), (36, 24), (36, 36)), QUADRANTS, strict=True):
        still[0, :, top:top + 4, left:left + 4] = torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1)
    torch.manual_seed(8)
    zoom_out = zoom_out_transform(40)
    assert all(all(_shows(zoom_out(still), c) for c in QUADRANTS) for _ in range(100))


def _square_on_plain(height: int = 48, width: int = 64, backdrop: int = 10) -> torch.Tensor:
    """A photo of a bright square on a plain dark backdrop, touching the left border."""
    clip = torch.full((1, 3, height, width), backdrop, dtype=torch.uint8)
    clip[..., 16:32, 0:24] = 230
    return clip


def test_matte_keeps_the_object_and_drops_a_plain_backdrop() -> None:
    alpha = matte(_square_on_plain())
    assert alpha is not None and alpha.shape == (1, 1, 48, 64)
    assert bool((alpha[..., 18:30, 0:22] == 1).all())  # the object, touching the border
    assert float(alpha[..., :14, :].max()) == 0 and float(alpha[..., :, 26:].max()) == 0
    # eroded by a pixel and feathered: the object's last two columns (22, 23) are soft, the
    # backdrop's first (24) is transparent, so no fringe of the old backdrop is pasted
    assert [round(float(a), 3) for a in alpha[0, 0, 24, 21:25]] == [1.0, 0.667, 0.333, 0.0]


def test_matte_of_a_large_frame_is_made_small_and_scaled_up() -> None:
    large = resize_to(_square_on_plain(), 192, 256)  # 4x: matted at 64 px, then resized
    alpha = matte(large)
    assert alpha is not None and alpha.shape == (1, 1, 192, 256)
    assert bool((alpha[..., 72:120, 0:84] == 1).all())
    assert float(alpha[..., :50, :].max()) == 0 and float(alpha[..., :, 104:].max()) == 0


def test_matte_fills_the_object_where_it_has_the_backdrop_colour() -> None:
    """A white shirt on white: its body, enclosed by a dark outline, stays opaque (a filled
    silhouette), while the white around it goes."""
    shirt = torch.full((1, 3, 64, 64), 250, dtype=torch.uint8)
    shirt[..., 16:48, 16:48] = 60  # outline ...
    shirt[..., 18:46, 18:46] = 245  # ... around a body of the backdrop's colour
    alpha = matte(shirt)
    assert alpha is not None
    assert bool((alpha[..., 18:46, 18:46] == 1).all())
    assert float(alpha[..., :14, :].max()) == 0


def test_matte_refuses_what_is_not_an_object_on_a_studio_backdrop() -> None:
    torch.manual_seed(5)
    assert matte(torch.randint(0, 256, (1, 3, 60, 80), dtype=torch.uint8)) is None  # clutter
    assert matte(torch.full((1, 3, 60, 80), 10, dtype=torch.uint8)) is None  # nothing on it
    mid_grey = _square_on_plain(backdrop=128)  # a crop inside a grey object, more likely
    assert matte(mid_grey) is None
    coloured = _square_on_plain().clone()
    coloured[:, 0] = 200  # a red border: a scene, not a studio backdrop
    coloured[..., 16:32, 0:24] = 40
    assert matte(coloured) is None
    big = torch.full((1, 3, 48, 64), 10, dtype=torch.uint8)
    big[..., 1:47, 1:63] = 230  # the object is the whole frame
    assert matte(big) is None
    assert matte(_square_on_plain(7, 7)) is None  # too small to tell


def test_placement_with_matte_shows_the_new_background_around_the_object(monkeypatch) -> None:
    """With a matte, the object's own backdrop is gone: away from the object the pasted area
    shows the new background, the object's pixels are unchanged, and frames stay equal."""
    canvas = torch.full((3, 3, 48, 64), 77, dtype=torch.uint8)
    monkeypatch.setattr(RandomPlacement, "_background", staticmethod(lambda clip: canvas.clone()))
    torch.manual_seed(6)
    place = RandomPlacement(scale=(0.5, 0.9), p=1.0, matte_p=1.0)
    clip = _square_on_plain(backdrop=0).expand(3, 3, 48, 64).clone()
    for _ in range(20):
        out = place(clip)
        assert int((out.int() - 77).abs().le(1).sum()) > 0.7 * out.numel()  # mostly background
        assert int((out == 0).sum()) == 0  # no pixel of the old black backdrop
        assert int((out.int() - 230).abs().le(1).sum()) > 0  # the object is there
        assert all(torch.equal(out[0], frame) for frame in out[1:])


def test_placement_pastes_other_photos_whole_with_the_same_draws_as_without_a_matte() -> None:
    torch.manual_seed(8)
    busy = torch.randint(0, 256, (1, 3, 60, 80), dtype=torch.uint8)
    torch.manual_seed(9)
    with_matte = [RandomPlacement(p=1.0, matte_p=1.0)(busy) for _ in range(5)]
    torch.manual_seed(9)
    plain = []
    for _ in range(5):
        plain.append(RandomPlacement(p=1.0, matte_p=0.0)(busy))
        torch.rand(())  # the matte's draw, which matte_p = 0 does not take
    assert all(torch.equal(a, b) for a, b in zip(with_matte, plain, strict=True))
