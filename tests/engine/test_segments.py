from __future__ import annotations

import numpy as np

from xmodal.engine.segments import Segment, nearest_windows, record_segments, uniform_frame_times


def test_each_frame_takes_the_window_whose_centre_is_nearest() -> None:
    starts, ends = [0.0, 2.0, 4.0], [4.0, 6.0, 8.0]  # centres 2, 4, 6
    assert nearest_windows(starts, ends, uniform_frame_times(8, 8.0)).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert nearest_windows(starts, ends, [3.0, 5.0, -1.0, 99.0]).tolist() == [0, 1, 0, 2]  # ties: earlier


def test_windows_given_out_of_order_keep_their_own_indices() -> None:
    assert nearest_windows([4.0, 0.0], [8.0, 4.0], [1.0, 7.0]).tolist() == [1, 0]


def test_record_segments() -> None:
    clips = [{"start_s": 0.0, "end_s": 4.0}, {"start_s": 2.0, "end_s": 6.0}, {"start_s": 4.0, "end_s": 8.0}]
    video = {"kind": "video", "frames": 16, "duration_s": 8.0, "clips": clips}
    assert record_segments(video) == [Segment(0, 5, 0), Segment(6, 9, 1), Segment(10, 15, 2)]
    assert record_segments({**video, "clips": None}) == [Segment(0, 15, -1)]
    assert record_segments({"kind": "image", "frames": 1, "duration_s": None}) == []
    assert record_segments({"path": "x.mp4", "error": "cannot decode"}) == []
    assert np.array_equal(uniform_frame_times(4, 2.0), [0.25, 0.75, 1.25, 1.75])
