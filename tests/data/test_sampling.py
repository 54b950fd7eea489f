"""Frame-index samplers, tested with plain numbers (examples and properties)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal.data.sampling import (
    TSNSampler,
    UniformSampler,
    make_sampler,
    multi_clip_indices,
    tsn_indices,
    uniform_indices,
    window_bounds,
)
from xmodal.errors import ConfigError

frame_counts = st.integers(min_value=1, max_value=1_000_000)
small_counts = st.integers(min_value=1, max_value=300)
segment_counts = st.integers(min_value=1, max_value=64)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


# -- TSN -----------------------------------------------------------------------------------


def test_tsn_eval_takes_segment_centres() -> None:
    assert tsn_indices(100, 4, train=False).tolist() == [12, 37, 62, 87]
    assert tsn_indices(8, 8, train=False).tolist() == list(range(8))
    assert tsn_indices(1, 3, train=False).tolist() == [0, 0, 0]


def test_tsn_eval_is_deterministic_and_ignores_rng() -> None:
    a = tsn_indices(300, 8, train=False, rng=np.random.default_rng(1))
    b = tsn_indices(300, 8, train=False, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)


def test_tsn_train_draws_one_random_frame_per_segment() -> None:
    draws = np.stack(
        [tsn_indices(100, 4, train=True, rng=np.random.default_rng(s)) for s in range(200)]
    )
    for segment in range(4):
        column = draws[:, segment]
        assert column.min() >= 25 * segment and column.max() < 25 * (segment + 1)
        assert len(np.unique(column)) > 10  # really random inside the segment


def test_tsn_train_is_reproducible_with_a_seeded_rng() -> None:
    first = tsn_indices(500, 8, train=True, rng=np.random.default_rng(7))
    again = tsn_indices(500, 8, train=True, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("train", [False, True])
def test_tsn_short_video_repeats_frames(train: bool) -> None:
    indices = tsn_indices(3, 8, train=train, rng=np.random.default_rng(0))
    assert len(indices) == 8
    assert (np.diff(indices) >= 0).all() and indices.min() >= 0 and indices.max() <= 2
    if not train:
        assert set(indices.tolist()) == {0, 1, 2}  # every frame is used


@pytest.mark.parametrize(("num_frames", "num_segments"), [(0, 4), (10, 0), (-1, 3)])
def test_tsn_rejects_empty_inputs(num_frames: int, num_segments: int) -> None:
    with pytest.raises(ValueError):
        tsn_indices(num_frames, num_segments, train=False)


@settings(max_examples=300, deadline=None)
@given(num_frames=frame_counts, num_segments=segment_counts, train=st.booleans(), seed=seeds)
def test_tsn_properties(num_frames: int, num_segments: int, train: bool, seed: int) -> None:
    indices = tsn_indices(num_frames, num_segments, train=train, rng=np.random.default_rng(seed))
    assert indices.dtype == np.int64 and indices.shape == (num_segments,)
    assert (np.diff(indices) >= 0).all()
    assert indices.min() >= 0 and indices.max() < num_frames
    if num_frames >= num_segments:
        assert len(np.unique(indices)) == num_segments
        # each index lies inside its own segment [floor(i*N/T), floor((i+1)*N/T))
        borders = np.arange(num_segments + 1) * num_frames // num_segments
        segment_of = np.searchsorted(borders, indices, side="right") - 1
        np.testing.assert_array_equal(segment_of, np.arange(num_segments))


# -- uniform -------------------------------------------------------------------------------


# -- multi-clip testing --------------------------------------------------------------------


def test_clips_are_evenly_offset_inside_segments() -> None:
    got = np.stack([multi_clip_indices(40, 4, k, 4) for k in range(4)])
    assert got[:, 0].tolist() == [1, 3, 6, 8]  # 1/8, 3/8, 5/8, 7/8 of a 10-frame segment
    assert got[0].tolist() == [1, 11, 21, 31]


def test_multi_clip_rejects_a_clip_out_of_range() -> None:
    with pytest.raises(ValueError, match="clip"):
        multi_clip_indices(40, 4, 2, 2)


@settings(deadline=None)  # timings vary on a shared CPU; the properties do not
@given(num_frames=frame_counts, num_segments=segment_counts,
       num_clips=st.integers(min_value=1, max_value=10), data=st.data())
def test_multi_clip_properties(num_frames: int, num_segments: int, num_clips: int,
                               data: st.DataObject) -> None:
    clip = data.draw(st.integers(min_value=0, max_value=num_clips - 1))
    idx = multi_clip_indices(num_frames, num_segments, clip, num_clips)
    assert idx.shape == (num_segments,) and idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() < num_frames
    assert (np.diff(idx) >= 0).all()
    if num_frames >= num_segments:  # each inside its own segment, as tsn_indices draws them
        borders = np.arange(num_segments + 1) * num_frames // num_segments
        assert ((borders[:-1] <= idx) & (idx < borders[1:])).all()
    # One clip is evaluation's TSN sampling: inference sees the frames validation saw.
    np.testing.assert_array_equal(multi_clip_indices(num_frames, num_segments, 0, 1),
                                  tsn_indices(num_frames, num_segments, train=False))


def test_uniform_is_centred_and_even() -> None:
    assert uniform_indices(10, 5).tolist() == [1, 3, 5, 7, 9]
    assert uniform_indices(48, 4).tolist() == [6, 18, 30, 42]
    assert uniform_indices(1, 4).tolist() == [0, 0, 0, 0]


@settings(max_examples=300, deadline=None)
@given(num_frames=frame_counts, num_samples=segment_counts)
def test_uniform_properties(num_frames: int, num_samples: int) -> None:
    indices = uniform_indices(num_frames, num_samples)
    assert indices.dtype == np.int64 and indices.shape == (num_samples,)
    assert (np.diff(indices) >= 0).all()
    assert indices.min() >= 0 and indices.max() < num_frames
    if num_frames >= num_samples:
        assert len(np.unique(indices)) == num_samples
        gaps = np.diff(indices)
        if gaps.size:
            assert gaps.max() - gaps.min() <= 1  # evenly spaced


# -- sliding windows -----------------------------------------------------------------------


def test_windows_cover_the_video_and_align_the_last_to_the_end() -> None:
    assert window_bounds(100, 10.0, 3.0, 3.0) == [(0, 30), (30, 60), (60, 90), (70, 100)]
    assert window_bounds(100, 10.0, 3.0, 2.0) == [
        (0, 30), (20, 50), (40, 70), (60, 90), (70, 100)
    ]
    assert window_bounds(90, 10.0, 3.0, 3.0) == [(0, 30), (30, 60), (60, 90)]


def test_video_shorter_than_a_window_is_one_window() -> None:
    assert window_bounds(12, 25.0, 2.0, 1.0) == [(0, 12)]
    assert window_bounds(1, 25.0, 0.001, 0.001) == [(0, 1)]


@pytest.mark.parametrize(
    ("num_frames", "fps", "window_s", "stride_s"),
    [(0, 25.0, 1.0, 1.0), (10, 0.0, 1.0, 1.0), (10, 25.0, 0.0, 1.0), (10, 25.0, 1.0, -1.0)],
)
def test_windows_reject_bad_arguments(
    num_frames: int, fps: float, window_s: float, stride_s: float
) -> None:
    with pytest.raises(ValueError):
        window_bounds(num_frames, fps, window_s, stride_s)


@settings(max_examples=300, deadline=None)
@given(
    num_frames=st.integers(min_value=1, max_value=100_000),
    fps=st.floats(min_value=1.0, max_value=120.0),
    window_s=st.floats(min_value=0.01, max_value=60.0),
    stride_s=st.floats(min_value=0.01, max_value=60.0),
)
def test_window_properties(num_frames: int, fps: float, window_s: float, stride_s: float) -> None:
    windows = window_bounds(num_frames, fps, window_s, stride_s)
    length = min(num_frames, max(1, round(window_s * fps)))
    stride = max(1, round(stride_s * fps))
    assert windows[0][0] == 0 and windows[-1][1] == num_frames
    starts = [start for start, _ in windows]
    assert all(b > a for a, b in zip(starts[:-1], starts[1:], strict=True))
    assert all(0 <= start < end <= num_frames for start, end in windows)
    assert all(end - start == length for start, end in windows)
    assert all(b - a <= stride for a, b in zip(starts[:-1], starts[1:], strict=True))
    if stride <= length:  # overlapping or touching windows leave no frame out
        covered = np.zeros(num_frames, dtype=bool)
        for start, end in windows:
            covered[start:end] = True
        assert covered.all()


# -- sampler objects -----------------------------------------------------------------------


def test_samplers_wrap_the_functions() -> None:
    rng = np.random.default_rng(3)
    tsn = TSNSampler(8, train=True)
    assert tsn.num_frames_out == 8
    np.testing.assert_array_equal(
        tsn(120, rng=np.random.default_rng(3)), tsn_indices(120, 8, train=True, rng=rng)
    )
    uniform = UniformSampler(5)
    assert uniform.num_frames_out == 5
    assert uniform(10).tolist() == [1, 3, 5, 7, 9]


@settings(deadline=None)  # timings vary on a shared CPU; the properties do not
@given(num_frames=small_counts, train=st.booleans())
def test_make_sampler(num_frames: int, train: bool) -> None:
    tsn = make_sampler("tsn", 4, train)
    assert tsn == TSNSampler(4, train=train)
    assert make_sampler("uniform", 4, train) == UniformSampler(4)
    assert len(tsn(num_frames, rng=np.random.default_rng(0))) == tsn.num_frames_out


def test_make_sampler_rejects_unknown_names_and_zero_frames() -> None:
    with pytest.raises(ConfigError, match="unknown frame sampler 'dense'.*tsn, uniform"):
        make_sampler("dense", 8, True)
    with pytest.raises(ConfigError, match=">= 1"):
        make_sampler("tsn", 0, False)
