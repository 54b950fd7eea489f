"""Which window of a labelled timeline each frame belongs to.

``xmodal label --window W --stride S`` classifies overlapping windows; a reviewer, an annotated
video or a frame-tagging tool needs one label per frame. Each frame takes the window whose
centre is nearest to the frame's middle (with equal windows, that window always covers the
frame; MMAction2's long-video demo also labels each frame from the window around it). Runs of
frames with the same window form segments. Pure arithmetic on seconds and frame counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Segment:
    """Frames ``first``..``last`` (0-based, inclusive) labelled by window ``window``."""

    first: int
    last: int
    window: int


def nearest_windows(starts_s: Sequence[float], ends_s: Sequence[float],
                    times_s: Sequence[float] | np.ndarray) -> np.ndarray:
    """(T,) index of the window whose centre is nearest to each time (ties: the earlier one)."""
    centres = (np.asarray(starts_s, dtype=np.float64) + np.asarray(ends_s, dtype=np.float64)) / 2
    if centres.size == 0:
        raise ValueError("no windows")
    order = np.argsort(centres, kind="stable")
    sorted_centres = centres[order]
    times = np.asarray(times_s, dtype=np.float64).reshape(-1)
    right = np.clip(np.searchsorted(sorted_centres, times, side="left"), 0, len(order) - 1)
    left = np.clip(right - 1, 0, len(order) - 1)
    take_left = np.abs(times - sorted_centres[left]) <= np.abs(sorted_centres[right] - times)
    return order[np.where(take_left, left, right)]


def uniform_frame_times(num_frames: int, duration_s: float) -> np.ndarray:
    """(N,) middle of each frame's time when ``num_frames`` evenly share ``duration_s``
    (a record keeps no per-frame times; window bounds were made on this same grid)."""
    return (np.arange(num_frames) + 0.5) * (duration_s / num_frames)


def segments_of(windows_per_frame: np.ndarray) -> list[Segment]:
    """Runs of equal window index, in frame order."""
    if windows_per_frame.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(windows_per_frame)) + 1
    firsts = np.concatenate([[0], cuts])
    lasts = np.concatenate([cuts - 1, [windows_per_frame.size - 1]])
    return [Segment(int(a), int(b), int(windows_per_frame[a])) for a, b in zip(firsts, lasts, strict=True)]


def record_segments(record: dict[str, Any]) -> list[Segment]:
    """A labelled video's frames split by window (one segment, window -1, without windows).

    Needs ``frames`` and ``duration_s``; returns [] for images, failed files and empty videos.
    """
    frames, duration = record.get("frames"), record.get("duration_s")
    if record.get("kind") != "video" or not frames or not duration:
        return []
    clips = record.get("clips") or []
    if not clips:
        return [Segment(0, int(frames) - 1, -1)]
    per_frame = nearest_windows([c["start_s"] for c in clips], [c["end_s"] for c in clips],
                                uniform_frame_times(int(frames), float(duration)))
    return segments_of(per_frame)
