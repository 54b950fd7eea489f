"""tools/_bench_clips.py: deterministic by seed, object inside the frame, the length and rate asked."""

from __future__ import annotations

from pathlib import Path

import _bench_clips as clips
import av
import numpy as np
import pytest


def _object(size: int = 28) -> np.ndarray:
    """A bright filled ellipse on black, like a Fashion-MNIST item."""
    yy, xx = np.mgrid[0:size, 0:size]
    inside = ((yy - size / 2) / (size * 0.45)) ** 2 + ((xx - size / 2) / (size * 0.3)) ** 2 < 1
    return np.where(inside, 180, 0).astype(np.uint8)


def test_same_seed_same_bytes_other_seed_other_clip(tmp_path: Path) -> None:
    image = _object()
    a = clips.make_clip(image, "silhouette", tmp_path / "a.mp4", seed=7)
    b = clips.make_clip(image, "silhouette", tmp_path / "b.mp4", seed=7)
    c = clips.make_clip(image, "silhouette", tmp_path / "c.mp4", seed=8)
    assert a == b
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    assert c != a
    assert (tmp_path / "c.mp4").read_bytes() != (tmp_path / "a.mp4").read_bytes()


@pytest.mark.parametrize("matte", clips.MATTES)
def test_object_stays_inside_the_frame_and_its_central_square(matte: str) -> None:
    image = _object(25)
    for seed in range(25):
        spec = clips.draw_spec(np.random.default_rng(seed), matte)
        frames, alpha = clips.render(image, spec, seed)
        assert frames.shape == (spec.frames, spec.height, spec.width, 3)
        assert frames.dtype == np.uint8
        # Something of the object in every frame, nothing of it on the frame's border.
        assert (alpha.reshape(spec.frames, -1).max(axis=1) > 0.5).all()
        border = np.concatenate([alpha[:, 0], alpha[:, -1], alpha[:, :, 0], alpha[:, :, -1]], axis=1)
        assert border.max() == 0.0
        left = (spec.width - spec.height) // 2
        outside_square = np.concatenate([alpha[:, :, :left], alpha[:, :, left + spec.height:]], axis=2)
        assert outside_square.max() == 0.0
        t = clips.track(spec)
        assert ((t.side >= 0.3 * spec.height) & (t.side <= clips.SCALE[1] * spec.height + 1e-6)).all()


def test_styles_vary_over_seeds() -> None:
    specs = [clips.draw_spec(np.random.default_rng(s), "card") for s in range(60)]
    assert {s.background for s in specs} == set(clips.BACKGROUNDS)
    assert {s.motion for s in specs} == set(clips.MOTIONS)
    assert len({s.photo for s in specs if s.photo}) >= 4
    assert len({(s.width, s.height) for s in specs}) == len(clips.ASPECTS)
    assert any(s.blur for s in specs) and any(not s.blur for s in specs)
    for s in specs:
        assert s.fps in clips.FPS_CHOICES
        assert clips.SECONDS[0] * s.fps - 1 <= s.frames <= clips.SECONDS[1] * s.fps + 1
        assert s.width % 2 == 0 and s.height == clips.SHORT_SIDE


@pytest.mark.parametrize("seed", [0, 3, 11])
def test_the_file_has_the_frames_rate_and_size_of_its_spec(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "clip.mp4"
    spec = clips.make_clip(_object(), "ink", path, seed)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert float(stream.average_rate) == pytest.approx(spec.fps)
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == spec.frames
    assert decoded[0].shape == (spec.height, spec.width, 3)
    duration = spec.frames / spec.fps
    assert clips.SECONDS[0] - 0.1 <= duration <= clips.SECONDS[1] + 0.1
    # The encoded pictures are the rendered ones, up to H.264's loss at a low bitrate.
    rendered, _ = clips.render(_object(), spec, seed)
    assert np.abs(rendered.astype(int) - np.stack(decoded)).mean() < 12


def test_ink_is_dark_on_light_backgrounds_and_light_on_dark() -> None:
    digit = np.zeros((8, 8), np.uint8)
    digit[1:7, 3:5] = 255  # a "1"
    for seed in range(30):
        spec = clips.draw_spec(np.random.default_rng(seed), "ink")
        frames, alpha = clips.render(digit, spec, seed)
        strokes = frames[0][alpha[0] > 0.9].mean()
        around = frames[0][(alpha[0] == 0)].mean()
        assert abs(strokes - around) > 40, (seed, spec.background, strokes, around)


def test_bad_matte_and_image_are_refused() -> None:
    with pytest.raises(ValueError, match="matte"):
        clips.draw_spec(np.random.default_rng(0), "glow")
    with pytest.raises(ValueError, match="uint8"):
        clips.prepare_object(np.zeros((8, 8), np.float32), "ink")
