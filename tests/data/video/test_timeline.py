"""The timeline from packet timestamps, with plain numbers (no I/O)."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.data.sampling import tsn_indices
from xmodal.data.video.timeline import counted_timeline, timeline_from_packets


def _cfr(n: int, ticks: int = 512, start: int = 0):
    pts = [start + k * ticks for k in range(n)]
    return pts, pts, [ticks] * n, [k % 12 == 0 for k in range(n)]


def test_constant_rate_maps_slot_k_to_frame_k() -> None:
    for n in (1, 7, 48, 301, 1000):
        pts, dts, dur, key = _cfr(n)
        timeline = timeline_from_packets(pts, dts, dur, key, 1 / 12800, 25.0)
        assert timeline.num_frames == n and timeline.duration_s == pytest.approx(n / 25)
        slots = np.arange(n)
        np.testing.assert_array_equal(timeline.frames_for_slots(slots), slots)
        np.testing.assert_array_equal(timeline.frames_for_slots(tsn_indices(n, 8, train=False)),
                                      tsn_indices(n, 8, train=False))


def test_times_rounded_to_milliseconds_name_the_same_frames() -> None:
    pts, dts, dur, key = _cfr(90, ticks=1)
    timeline = timeline_from_packets(pts, dts, dur, key, 1 / 30, 30.0)  # frame k from k/30 s
    rounded = np.round(timeline.starts_s, 3)  # 1/30 -> 0.033, before frame 1 appears
    np.testing.assert_array_equal(timeline.index_at(rounded), np.arange(90))
    assert timeline.index_at([1 / 30 - 0.002]).tolist() == [0]


def test_b_frame_order_is_sorted_and_keyframes_found() -> None:
    # decode order I P B B P B B (pts 0 3 1 2 6 4 5), dts monotonic
    pts = [0, 3, 1, 2, 6, 4, 5]
    dts = [-1, 0, 1, 2, 3, 4, 5]
    timeline = timeline_from_packets(pts, dts, [1] * 7, [True] + [False] * 6, 0.04, 25.0)
    np.testing.assert_allclose(timeline.starts_s, np.arange(7) * 0.04)
    assert timeline.trusted_pts and timeline.keyframes.tolist() == [0]
    assert timeline.index_of_pts(4) == 4


def test_a_pause_is_sampled_by_time() -> None:
    pts = [0, 1, 2, 3, 13, 14]  # frame 3 stays on screen for 10 ticks
    timeline = timeline_from_packets(pts, pts, [1] * 6, [True] + [False] * 5, 1.0, 1.0)
    assert timeline.duration_s == 15
    assert timeline.index_at([3.0, 8.0, 12.99, 13.0]).tolist() == [3, 3, 3, 4]
    # six slots of 2.5 s: centres 1.25, 3.75, 6.25, 8.75, 11.25, 13.75
    assert timeline.frames_for_slots(np.arange(6)).tolist() == [1, 3, 3, 3, 3, 4]


def test_a_restarting_clock_is_unwrapped_and_not_trusted() -> None:
    part = list(range(100, 150))
    pts = part + part  # two MPEG-TS files joined: the second restarts at 100
    timeline = timeline_from_packets(pts, pts, [1] * 100, [k % 25 == 0 for k in range(100)],
                                     0.04, 25.0)
    assert timeline.num_frames == 100 and timeline.duration_s == pytest.approx(4.0)
    np.testing.assert_allclose(timeline.starts_s, np.arange(100) * 0.04)
    assert not timeline.trusted_pts and not timeline.identifies_by_pts
    assert timeline.keyframes.tolist() == [0, 25, 50, 75]


def test_decode_order_stamps_of_a_reordering_stream_are_not_trusted() -> None:
    pts = list(range(20))
    trusting = timeline_from_packets(pts, pts, [1] * 20, [True] * 20, 0.04, 25.0)
    doubting = timeline_from_packets(pts, pts, [1] * 20, [True] * 20, 0.04, 25.0, reorders=True)
    assert trusting.identifies_by_pts and not doubting.identifies_by_pts
    assert doubting.num_frames == 20


def test_missing_timestamps_count_frames() -> None:
    timeline = timeline_from_packets([None] * 5, [None] * 5, [0] * 5, [True] * 5, 0.001, 10.0)
    assert timeline.pts is None and timeline.duration_s == pytest.approx(0.5)
    np.testing.assert_allclose(timeline.starts_s, counted_timeline(5, 10.0).starts_s)


def test_no_packets_is_none_and_bad_counts_raise() -> None:
    assert timeline_from_packets([], [], [], [], 0.04, 25.0) is None
    with pytest.raises(ValueError):
        counted_timeline(0, 25.0)
