"""The torch-free resize (Pillow) against torch's antialiased resize that training uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmodal.data import resize as np_resize
from xmodal.data.transforms import center_crop, resize_shorter_side


def _frame(kind: str, height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    smooth = np.stack([xx * 255 / width, yy * 255 / height, ((xx + yy) % 64) * 4], -1)
    return np.clip(smooth + rng.integers(-30, 30, smooth.shape), 0, 255).astype(np.uint8)


def _torch(frame: np.ndarray, size: int) -> np.ndarray:
    chw = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)
    return resize_shorter_side(chw, size).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("kind", ["random", "textured"])
@pytest.mark.parametrize(("height", "width"), [(360, 640), (1080, 1920), (240, 320), (300, 200),
                                               (100, 80)])
def test_pillow_resize_is_within_one_level_of_torch(kind: str, height: int, width: int) -> None:
    frame = _frame(kind, height, width)
    ours, theirs = np_resize.resize_shorter_side(frame, 256), _torch(frame, 256)
    assert ours.shape == theirs.shape and ours.dtype == np.uint8
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.01  # rounding on a few pixels; measured under 0.4%


def test_resize_keeps_a_frame_of_the_right_size_as_is() -> None:
    frame = _frame("random", 256, 300)
    assert np_resize.resize(frame, 256, 300) is frame
    assert np_resize.resize(frame, 128, 150).shape == (128, 150, 3)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                                 np.zeros((4, 4, 4), np.uint8)])
def test_resize_rejects_other_frames(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        np_resize.resize(bad, 2, 2)


def test_center_crop_equals_torchvision_convention() -> None:
    frames = _frame("random", 256, 341)[None].repeat(2, 0)
    ours = np_resize.center_crop(frames, 224)
    theirs = center_crop(torch.from_numpy(frames).permute(0, 3, 1, 2), 224).permute(0, 2, 3, 1)
    assert np.array_equal(ours, theirs.numpy())


def test_shorter_side_shape_is_shared_with_transforms() -> None:
    from xmodal.data import transforms

    assert transforms.shorter_side_shape is np_resize.shorter_side_shape
    assert np_resize.shorter_side_shape(360, 640, 256) == (256, 455)
    assert np_resize.shorter_side_shape(640, 360, 256) == (455, 256)


@pytest.mark.parametrize(("height", "width", "scale"), [(28, 28, 0.8), (8, 8, 0.8), (90, 160, 0.5),
                                                         (101, 57, 0.65)])
def test_zoom_out_centres_the_frame_on_its_border_colour(height: int, width: int, scale: float) -> None:
    frame = np.full((height, width, 3), 250, np.uint8)  # a scan's white paper ...
    frame[1:-1, 1:-1] = _frame("random", height - 2, width - 2)[..., :3]  # ... around the ink
    out = np_resize.zoom_out(frame, scale)
    new_h, new_w = round(height / scale), round(width / scale)
    assert out.shape == (new_h, new_w, 3) and out.dtype == np.uint8
    top, left = (new_h - height) // 2, (new_w - width) // 2
    assert np.array_equal(out[top:top + height, left:left + width], frame)
    canvas = out.copy()
    canvas[top:top + height, left:left + width] = 250
    assert (canvas == 250).all()  # the backdrop extended, nothing else
    assert abs(height / new_h - scale) < 1.5 / new_h  # the picture at `scale` of the new side


def test_zoom_out_fills_with_the_borders_main_colour() -> None:
    frame = np.zeros((20, 20, 3), np.uint8)  # black backdrop (MNIST-like) ...
    frame[0, :3] = (255, 0, 0)  # ... with a few odd border pixels
    out = np_resize.zoom_out(frame, 0.5)
    assert out.shape == (40, 40, 3)
    assert (out[:5] == 0).all() and (out[:, :5] == 0).all()


def test_zoom_out_at_scale_one_returns_the_frame() -> None:
    frame = _frame("random", 16, 12)
    assert np_resize.zoom_out(frame, 1.0) is frame


@pytest.mark.parametrize("scale", [0.0, -0.5, 1.5, float("nan")])
def test_zoom_out_rejects_scales_outside_zero_to_one(scale: float) -> None:
    with pytest.raises(ValueError, match="scale"):
        np_resize.zoom_out(_frame("random", 8, 8), scale)
