"""ClipReader: the views inference scores must be what training's evaluation transform makes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.utils import write_video
from xmodal.data.sampling import multi_clip_indices
from xmodal.data.video import open_video
from xmodal.engine.inputs import ClipReader

pytest.importorskip("av")


@pytest.fixture(scope="module", params=[(400, 300), (160, 120)], ids=["shrunk", "enlarged"])
def clip_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Larger than the model's 256 px resize (shrunk while decoding), and smaller (enlarged after)."""
    return write_video(tmp_path_factory.mktemp("inputs") / "clip.mp4", 20, size=request.param)


def _full_size_clip(path: Path, indices: np.ndarray) -> torch.Tensor:
    with open_video(path, "pyav") as source:
        frames = source.get_frames(indices.tolist())
    return torch.from_numpy(frames).permute(0, 3, 1, 2)


def test_one_view_equals_the_evaluation_transform(clip_path: Path) -> None:
    """Frames are resized while decoding (short_side); pixels must not move for it."""
    from xmodal.data.transforms import eval_transform

    views, info = ClipReader(frames=4, input_size=224, resize_size=256, backend="pyav")(clip_path)
    expected = eval_transform(224, 256)(_full_size_clip(clip_path, multi_clip_indices(20, 4, 0, 1)))
    assert views.shape == (1, 4, 3, 224, 224) and info["n_avg"] == 1
    torch.testing.assert_close(views[0], expected, rtol=0, atol=0)


def test_three_crops_span_the_longer_side(tmp_path: Path) -> None:
    from torchvision.transforms import v2

    large_clip = write_video(tmp_path / "clip.mp4", 20, size=(400, 300))
    views, _ = ClipReader(frames=2, input_size=224, resize_size=256, backend="pyav",
                          clips=2, crops=3)(large_clip)
    assert views.shape == (6, 2, 3, 224, 224)
    resized = v2.Resize(224, antialias=True)(_full_size_clip(large_clip,
                                                             multi_clip_indices(20, 2, 1, 2)))
    assert resized.shape[-1] == 298  # 400x300 -> 298x224: crops at x = 0, 37, 74
    for crop, left in zip(views[3:], (0, 37, 74), strict=True):
        torch.testing.assert_close(crop, resized[..., left:left + 224], rtol=0, atol=0)


def test_arrays_in_any_layout_give_the_same_views() -> None:
    """Frames are shared with torch without a copy when possible; views must not depend on it."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 40, 60, 3), dtype=np.uint8)
    reader = ClipReader(frames=3, input_size=32, resize_size=36)
    expected, _ = reader(frames)
    bgr = frames[..., ::-1].copy()
    read_only = frames.copy()
    read_only.flags.writeable = False
    channels_first = np.ascontiguousarray(frames.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    for layout in (bgr[..., ::-1], read_only, channels_first):
        got, _ = reader(layout)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize(("clips", "crops", "window_s"), [(1, 1, None), (2, 3, None), (1, 1, 1.0)])
def test_numpy_views_match_the_torch_views(clip_path: Path, clips: int, crops: int,
                                           window_s: float | None) -> None:
    """The ONNX Runtime path's views (Pillow, channels last) are the PyTorch path's, to one level."""
    kwargs = dict(frames=4, input_size=224, resize_size=256, backend="pyav", clips=clips,
                  crops=crops, window_s=window_s)
    expected, info_t = ClipReader(**kwargs)(clip_path)
    got, info_n = ClipReader(**kwargs, arrays="numpy")(clip_path)
    assert isinstance(got, np.ndarray) and got.flags.c_contiguous
    assert got.shape == (expected.shape[0], 4, 224, 224, 3) and info_n == info_t
    diff = np.abs(got.astype(int) - expected.permute(0, 1, 3, 4, 2).numpy().astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_numpy_views_of_an_image_and_an_array(tmp_path: Path) -> None:
    from tests.utils import write_image

    photo = write_image(tmp_path / "p.png", size=(300, 200))
    rng = np.random.default_rng(1)
    array = rng.integers(0, 256, (2, 100, 90, 3), dtype=np.uint8)
    for item, frames in ((photo, 1), (array, 2)):
        got, _ = ClipReader(frames=2, input_size=64, resize_size=72, arrays="numpy")(item)
        expected, _ = ClipReader(frames=2, input_size=64, resize_size=72)(item)
        assert got.shape == (1, frames, 64, 64, 3)
        assert np.abs(got.astype(int) - expected.permute(0, 1, 3, 4, 2).numpy()).max() <= 1


def _square_photo(path: Path) -> tuple[Path, np.ndarray]:
    """A white square on black, 80 x 60: an object on a studio backdrop."""
    from PIL import Image

    pixels = np.zeros((60, 80, 3), np.uint8)
    pixels[15:45, 25:55] = 255
    Image.fromarray(pixels).save(path)
    return path, pixels


@pytest.mark.parametrize("arrays", ["torch", "numpy"])
def test_still_scale_zooms_out_photos_and_single_frames_only(tmp_path: Path, clip_path: Path,
                                                             arrays: str) -> None:
    from xmodal.data.resize import zoom_out

    photo, pixels = _square_photo(tmp_path / "square.png")
    plain = ClipReader(frames=2, input_size=64, resize_size=72, arrays=arrays)
    zoomed = ClipReader(frames=2, input_size=64, resize_size=72, arrays=arrays, still_scale=0.5)
    expected, _ = plain(zoom_out(pixels, 0.5))
    for item in (photo, pixels, pixels[None]):  # a file, an (H, W, 3) and a (1, H, W, 3) array
        got, _ = zoomed(item)
        assert np.array_equal(np.asarray(got), np.asarray(expected))
    # the object now spans about half as many pixels of the view
    lit = (np.asarray(got, dtype=float).reshape(-1) > 127).mean()
    lit_plain = (np.asarray(plain(photo)[0], dtype=float).reshape(-1) > 127).mean()
    assert 0.2 < lit / lit_plain < 0.3  # a quarter of the area, give or take the resize's edges
    for item in (clip_path, np.stack([pixels, pixels])):  # videos and clips as they come
        assert np.array_equal(np.asarray(zoomed(item)[0]), np.asarray(plain(item)[0]))


def test_reader_from_meta_reads_the_still_scale() -> None:
    meta = {"frames": 4, "preprocessing": {"input_size": 64, "resize_size": 72, "still_scale": 0.8}}
    reader = ClipReader.from_meta(meta, "pyav", clips=2)
    assert (reader.frames, reader.input_size, reader.resize_size, reader.backend,
            reader.clips, reader.still_scale) == (4, 64, 72, "pyav", 2, 0.8)
    assert ClipReader.from_meta(meta, still_scale=1.0).still_scale == 1.0  # the caller's wins
    del meta["preprocessing"]["still_scale"], meta["frames"]  # a model saved before it existed
    old = ClipReader.from_meta(meta)
    assert (old.still_scale, old.frames) == (1.0, 8)


@pytest.mark.parametrize("scale", [0.0, 1.2, -1.0])
def test_reader_refuses_a_still_scale_outside_zero_to_one(scale: float) -> None:
    from xmodal.errors import ConfigError

    with pytest.raises(ConfigError, match="still_scale"):
        ClipReader(frames=2, input_size=64, resize_size=72, still_scale=scale)


def test_a_large_photo_is_shrunk_before_it_is_zoomed_out(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The canvas of a zoomed-out photo stays near the view's size (not 1 / scale^2 times the
    photo's pixels), and the view is what zooming the full photo out would give."""
    import xmodal.data.resize as resize_mod
    from xmodal.data.resize import zoom_out

    rng = np.random.default_rng(0)
    photo = np.clip(rng.normal(128, 20, (600, 800, 3)), 0, 255).astype(np.uint8)
    photo[150:450, 250:550] = 240  # an object
    seen: list[tuple[int, ...]] = []
    real = resize_mod.zoom_out
    monkeypatch.setattr(resize_mod, "zoom_out", lambda f, s: seen.append(f.shape) or real(f, s))
    reader = ClipReader(frames=2, input_size=64, resize_size=72, arrays="numpy", still_scale=0.25)
    got, _ = reader(photo)
    assert seen and min(seen[0][:2]) == 18  # ceil(72 x 0.25): the view's share, not 600 px
    exact, _ = ClipReader(frames=2, input_size=64, resize_size=72, arrays="numpy")(zoom_out(photo, 0.25))
    assert np.abs(got.astype(int) - exact.astype(int)).mean() < 3  # the same picture, resized once more
