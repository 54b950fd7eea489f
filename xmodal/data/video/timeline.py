"""When each frame of a video is on screen, from its packets' timestamps rather than its header.

Headers lie: an MP4 cut with stream copy stores frames that an edit list hides, two MPEG-TS
files joined with ``cat`` restart their clock half-way, an AVI header can count 40 frames where
100 decode, a track duration can be 30 times too short. The packets a demuxer hands out, with
their timestamps and discard flags, are what a player shows, so the timeline is built from them.

Frame sampling works on *slots*: ``N`` equal cells of the video's time span (``N`` = the frames
shown). Slot ``i`` is read as the frame on screen at the slot's centre, so a constant-rate video
maps slot ``i`` to frame ``i`` and a variable-rate one is sampled by presentation time. Pure
arithmetic, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

TIME_TOLERANCE_S = 0.0005  # half the millisecond that records round ``sampled_s`` to


@dataclass(frozen=True, eq=False)
class Timeline:
    """The frames a player shows, in presentation order.

    ``starts_s`` (N,) are the seconds at which each frame appears, from 0 (the first frame);
    ``end_s`` when the last one leaves the screen; ``pts`` (N,) the frames' timestamps in stream
    ticks, or None when frames carry none (then frames are counted in decode output order);
    ``keyframes`` the indices of frames a decoder can start from; ``trusted_pts`` is False when
    a frame's timestamp does not name it: timestamps that restart part-way (joined MPEG-TS),
    repeat, or were written in decode order for a stream that reorders frames (MPEG-4 Part 2
    with B-frames remuxed from AVI). Such videos are decoded in order and their frames counted.
    """

    starts_s: np.ndarray
    end_s: float
    pts: np.ndarray | None
    keyframes: np.ndarray
    trusted_pts: bool = True

    @property
    def num_frames(self) -> int:
        return int(self.starts_s.size)

    @property
    def duration_s(self) -> float:
        return float(self.end_s)

    @property
    def identifies_by_pts(self) -> bool:
        """Whether a decoded frame's timestamp names its index (else frames are counted)."""
        return self.pts is not None and self.trusted_pts

    def index_at(self, times_s: Sequence[float] | np.ndarray) -> np.ndarray:
        """(K,) indices of the frames on screen at ``times_s`` (clamped into the video).

        A time up to ``TIME_TOLERANCE_S`` before a frame's start names that frame: records give
        ``sampled_s`` rounded to milliseconds, and 0.033 must read the frame shown at 1/30 s.
        """
        times = np.asarray(times_s, dtype=np.float64).reshape(-1) + TIME_TOLERANCE_S
        found = np.searchsorted(self.starts_s, times, side="right") - 1
        return np.clip(found, 0, self.num_frames - 1).astype(np.int64)

    def slot_times(self, slots: Sequence[int] | np.ndarray) -> np.ndarray:
        """Centres, in seconds, of slots ``slots`` of ``num_frames`` equal cells of the span."""
        cells = np.asarray(slots, dtype=np.float64).reshape(-1)
        return (cells + 0.5) * (self.end_s / self.num_frames)

    def frames_for_slots(self, slots: Sequence[int] | np.ndarray) -> np.ndarray:
        """(K,) indices of the frames on screen at the centres of ``slots``."""
        return self.index_at(self.slot_times(slots))

    def index_of_pts(self, pts: int) -> int:
        """Index of the frame with timestamp ``pts`` (the one on screen then, if none matches)."""
        found = self._index_by_pts.get(pts)
        if found is not None:
            return found
        assert self.pts is not None
        return int(max(0, np.searchsorted(self.pts, pts, side="right") - 1))

    @cached_property
    def _index_by_pts(self) -> dict[int, int]:
        # Called for every decoded frame: a dict lookup is 10x cheaper than a numpy search.
        return {} if self.pts is None else {int(p): i for i, p in enumerate(self.pts.tolist())}

    def keyframe_before(self, index: int) -> int:
        """The last keyframe index at or before ``index`` (0 if none is known)."""
        pos = int(np.searchsorted(self.keyframes, index, side="right")) - 1
        return int(self.keyframes[pos]) if pos >= 0 else 0


def counted_timeline(num_frames: int, fps: float) -> Timeline:
    """A timeline for frames without timestamps: ``num_frames`` frames at a constant ``fps``."""
    if num_frames < 1 or not fps > 0:
        raise ValueError(f"need num_frames >= 1 and fps > 0, got {num_frames}, {fps}")
    starts = np.arange(num_frames, dtype=np.float64) / fps
    return Timeline(starts, num_frames / fps, None, np.zeros(1, dtype=np.int64))


def timeline_from_packets(
    pts: Sequence[int | None],
    dts: Sequence[int | None],
    durations: Sequence[int],
    keyframe: Sequence[bool],
    time_base: float,
    fallback_fps: float,
    reorders: bool = False,
) -> Timeline | None:
    """The timeline of the shown (non-discarded) packets of one stream, in decode order.

    ``time_base`` is seconds per tick; ``reorders`` says the decoder reorders frames (B-frames),
    so timestamps equal to decode timestamps throughout were written in the wrong order.
    Timestamps that run backwards in decode order start a new part (joined MPEG-TS): each part
    is moved to follow the one before. Returns None for no packets; a counted timeline at
    ``fallback_fps`` when packets carry no timestamps.
    """
    count = len(pts)
    if count == 0:
        return None
    stamps = np.array([p if p is not None else (d if d is not None else _MISSING)
                       for p, d in zip(pts, dts, strict=True)], dtype=np.int64)
    if (stamps == _MISSING).any():
        return counted_timeline(count, fallback_fps)
    has_dts = all(d is not None for d in dts)
    order_keys = np.array(dts, dtype=np.int64) if has_dts else stamps
    frame_ticks = _typical_duration(np.asarray(durations, dtype=np.int64), stamps)
    # Decode timestamps never run backwards within a part; presentation timestamps do, by the
    # decoder's reordering depth (at most 16 frames in H.264/HEVC).
    tolerance = frame_ticks if has_dts else 32 * frame_ticks
    unwrapped, trusted = _unwrap(stamps, order_keys, np.asarray(durations), frame_ticks,
                                 tolerance)
    order = np.argsort(unwrapped, kind="stable")
    ticks = unwrapped[order]
    if np.any(np.diff(ticks) == 0):
        trusted = False  # two frames share a timestamp: it cannot name a frame
    if reorders and has_dts and count > 2 and np.array_equal(stamps, order_keys):
        trusted = False  # presentation stamps in decode order: the decoder's output disagrees
    last_duration = int(np.asarray(durations)[order[-1]]) or frame_ticks
    starts = (ticks - ticks[0]).astype(np.float64) * time_base
    end = starts[-1] + last_duration * time_base
    ranks = np.empty(count, dtype=np.int64)
    ranks[order] = np.arange(count)
    keys = np.unique(np.concatenate([[0], ranks[np.asarray(keyframe, dtype=bool)]]))
    return Timeline(starts, round(float(end), 6), ticks if trusted else None, keys, trusted)


_MISSING = np.iinfo(np.int64).min


def _typical_duration(durations: np.ndarray, stamps: np.ndarray) -> int:
    """Ticks of one frame: the packets' most common duration, else the median timestamp step."""
    positive = durations[durations > 0]
    if positive.size:
        values, counts = np.unique(positive, return_counts=True)
        return int(values[np.argmax(counts)])
    steps = np.diff(np.sort(stamps))
    steps = steps[steps > 0]
    return int(np.median(steps)) if steps.size else 1


def _unwrap(stamps: np.ndarray, order_keys: np.ndarray, durations: np.ndarray,
            frame_ticks: int, tolerance: int) -> tuple[np.ndarray, bool]:
    """Shift each part after a backwards jump of the decode clock to follow the part before."""
    jumps = np.flatnonzero(np.diff(order_keys) < -tolerance) + 1
    if jumps.size == 0:
        return stamps, True
    out = stamps.copy()
    bounds = [0, *jumps.tolist(), stamps.size]
    ends = stamps + np.where(durations > 0, durations, frame_ticks)
    previous_end = int(ends[: bounds[1]].max())
    for start, stop in zip(bounds[1:-1], bounds[2:], strict=False):
        shift = previous_end - int(stamps[start:stop].min())
        out[start:stop] += shift
        previous_end = int(ends[start:stop].max()) + shift
    return out, False
