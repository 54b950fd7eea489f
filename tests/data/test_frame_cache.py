from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.utils import write_video
from xmodal.data.datasets import ClipDataset, Sample
from xmodal.data.frame_cache import FrameCache
from xmodal.data.sampling import TSNSampler, UniformSampler
from xmodal.data.transforms import clip_short_side, train_transform
from xmodal.data.video import read_clip
from xmodal.errors import VideoDecodeError

SIZE = 32  # training crop; the "none" and "cross" presets resize clips to round(32 / 0.875) = 37


def _root(tmp_path: Path, name: str = "cache") -> Path:
    """The folder a run would create for its frames (the cache never creates it)."""
    (tmp_path / name).mkdir(exist_ok=True)
    return tmp_path / name


def _items(dataset: ClipDataset, seed: int, times: int = 4) -> list[torch.Tensor]:
    torch.manual_seed(seed)  # the dataset draws each clip's frames from torch's RNG
    return [dataset[0][0] for _ in range(times)]


@pytest.mark.parametrize("preset", ["none", "cross"])
def test_a_clip_that_fits_gives_the_same_frames_and_pixels_with_the_cache(tmp_path: Path,
                                                                         preset: str) -> None:
    """All 40 frames fit in the budget, so TSN draws the same frames from the cache as from the
    file, and frames shrunk while decoding equal the transform's own resize."""
    path = write_video(tmp_path / "clip.mp4", 40, size=(80, 48))
    cache = FrameCache(_root(tmp_path), short_side=clip_short_side(SIZE, preset, 3))
    kwargs = dict(num_frames=3, transform=train_transform(SIZE, preset), train=True)
    plain = ClipDataset([Sample(path, 0, "video")], **kwargs)
    cached = ClipDataset([Sample(path, 0, "video")], frame_cache=cache, **kwargs)
    want = _items(plain, seed=1)
    first = _items(cached, seed=1)  # decodes and stores
    assert cache.entry(path).is_file()
    again = _items(cached, seed=1)  # reads the stored frames back
    for a, b, c in zip(want, first, again, strict=True):
        assert a.shape == (3, 3, SIZE, SIZE)
        assert torch.equal(a, b) and torch.equal(a, c)
    assert len({tuple(x.flatten()[:64].tolist()) for x in want}) > 1  # the draws do vary


def test_a_clip_over_the_budget_keeps_evenly_spaced_frames_and_draws_from_them(tmp_path: Path) -> None:
    path = write_video(tmp_path / "long.mp4", 60, size=(64, 48))
    frame_bytes = 37 * 49 * 3
    cache = FrameCache(_root(tmp_path), short_side=37, max_bytes=20 * frame_bytes)
    grid = cache.grid(path)
    direct = read_clip(path, UniformSampler(20), short_side=37).frames
    assert grid.shape == (20, 37, 49, 3) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid, direct)
    rng = np.random.default_rng(0)
    for _ in range(5):
        drawn = cache.frames(path, TSNSampler(3, train=True), rng)
        assert drawn.shape == (3, 37, 49, 3)
        assert all(any(np.array_equal(frame, g) for g in grid) for frame in drawn)
    tiny_budget = FrameCache(_root(tmp_path, "cache2"), short_side=37, max_bytes=1)
    assert len(tiny_budget.grid(path)) == 16  # never fewer frames than that


def test_a_changed_file_is_decoded_again(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", 8, size=(64, 48))
    cache = FrameCache(_root(tmp_path), short_side=48)
    before = np.array(cache.grid(path))
    old_entry = cache.entry(path)
    frames = [np.full((48, 64, 3), 200, np.uint8)] * 8
    write_video(path, size=(64, 48), frames=frames)
    os.utime(path, ns=(1, 1))  # a new modification time even on a coarse clock
    assert cache.entry(path) != old_entry
    after = cache.grid(path)
    assert not np.array_equal(before, after)
    assert abs(float(after.mean()) - 200) < 3


def test_an_unreadable_video_raises_the_decoders_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(2048))
    cache = FrameCache(_root(tmp_path), short_side=48)
    with pytest.raises(VideoDecodeError):
        cache.grid(bad)
    assert not any((tmp_path / "cache").glob("*.npy"))


@pytest.mark.parametrize("case", ["missing", "symlink_loop", "folder"])
def test_a_path_that_cannot_be_looked_up_raises_a_named_input_error(tmp_path: Path, case: str) -> None:
    """What the training loader skips and counts is an InputError with a reason; an OSError from
    looking the file up would end the run instead."""
    from xmodal.errors import InputError

    path = tmp_path / "clip.mp4"
    if case == "symlink_loop":
        path.symlink_to(path)
    elif case == "folder":
        path.mkdir()
    cache = FrameCache(_root(tmp_path), short_side=48)
    with pytest.raises(InputError):
        cache.frames(path, TSNSampler(3, train=True), np.random.default_rng(0))


def test_a_cache_that_cannot_be_written_costs_speed_not_frames(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from xmodal.data import frame_cache

    path = write_video(tmp_path / "clip.mp4", 8, size=(64, 48))
    want = read_clip(path, TSNSampler(3, train=False), short_side=48).frames
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    unwritable = FrameCache(blocker / "cache", short_side=48)
    np.testing.assert_array_equal(unwritable.frames(path, TSNSampler(3, train=False)), want)
    assert pickle.loads(pickle.dumps(unwritable)).entry(path) == unwritable.entry(path)  # to workers

    full = shutil.disk_usage(tmp_path)._replace(free=frame_cache.DISK_RESERVE)
    monkeypatch.setattr(frame_cache.shutil, "disk_usage", lambda _: full)
    nearly_full = FrameCache(_root(tmp_path), short_side=48)
    np.testing.assert_array_equal(nearly_full.frames(path, TSNSampler(3, train=False)), want)
    assert not nearly_full.entry(path).exists()  # the disk keeps its reserve


def test_only_presets_that_resize_clips_like_evaluation_can_use_the_cache() -> None:
    assert clip_short_side(224, "cross", 3) == clip_short_side(224, "none", 3) == 256
    assert clip_short_side(224, "none", 1) == 256
    assert clip_short_side(224, "light", 3) is None and clip_short_side(224, "strong", 3) is None
    # "cross" crops a 1-frame clip from the full frame, like a still: shrunk frames would differ
    assert clip_short_side(224, "cross", 1) is None


def test_a_failed_write_leaves_no_file_and_returns_the_frames(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from xmodal.data import frame_cache

    path = write_video(tmp_path / "clip.mp4", 8, size=(64, 48))
    cache = FrameCache(_root(tmp_path), short_side=48)

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(frame_cache.os, "replace", disk_full)
    grid = cache.grid(path)
    assert grid.shape == (8, 48, 64, 3)
    assert list((tmp_path / "cache").iterdir()) == []  # neither the entry nor a .part file


def test_a_removed_root_is_not_created_again(tmp_path: Path) -> None:
    """A worker still drawing while the run removes its folder must not bring it back."""
    path = write_video(tmp_path / "clip.mp4", 8, size=(64, 48))
    gone = FrameCache(tmp_path / "removed", short_side=48)
    want = read_clip(path, TSNSampler(3, train=False), short_side=48).frames
    np.testing.assert_array_equal(gone.frames(path, TSNSampler(3, train=False)), want)
    assert not (tmp_path / "removed").exists()
