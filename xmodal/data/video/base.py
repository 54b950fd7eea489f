"""The interface every video backend implements, and what it reports about a video."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from xmodal.data.video.timeline import Timeline

# Threads each decoder may use; 0 lets FFmpeg pick (one per core). Worker processes set 1:
# N workers x 1 thread fill N cores, where N workers x N threads would fight over them.
_decoder_threads = 0


def set_decoder_threads(threads: int) -> None:
    """Threads per decoder opened from now on in this process (0: FFmpeg's choice)."""
    global _decoder_threads
    _decoder_threads = max(0, int(threads))


def decoder_threads() -> int:
    return _decoder_threads


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a video's chosen stream.

    ``num_frames`` and ``duration_s`` count what a player shows (from the packets, not the
    header); ``fps`` is the stream's average rate; ``width`` x ``height`` the size of the
    returned frames (upright, square pixels, shrunk); ``stream`` the stream's index in the file.
    """

    num_frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    stream: int = 0
    codec: str = ""


@dataclass(frozen=True)
class Clip:
    """Frames sampled from a video: ``frames`` (T, H, W, 3) uint8 RGB, upright and at the
    display aspect; ``times_s`` (T,) their presentation times in seconds from the first frame;
    ``info`` the video's facts."""

    frames: np.ndarray
    times_s: np.ndarray
    info: VideoInfo


class VideoSource(ABC):
    """An open video that returns frames by index; use as a context manager.

    Frame ``i`` is the i-th frame a player shows. Samplers work on slots (``Timeline``): use
    ``read_slots`` or ``read_times``, which return the frame on screen at each time.
    """

    backend: str
    info: VideoInfo
    path: Path
    timeline: Timeline

    @abstractmethod
    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """(len(indices), H, W, 3) uint8 RGB in the order asked; past-the-end indices clamp."""

    @abstractmethod
    def close(self) -> None:
        """Release the decoder; safe to call twice."""

    def read_times(self, times_s: Sequence[float] | np.ndarray) -> Clip:
        """The frames on screen at ``times_s`` (seconds from the first frame)."""
        return self._read_indices(self.timeline.index_at(times_s))

    def read_slots(self, slots: Sequence[int] | np.ndarray) -> Clip:
        """The frames on screen at the centres of ``slots`` (a sampler's output)."""
        return self._read_indices(self.timeline.frames_for_slots(slots))

    def _read_indices(self, indices: np.ndarray) -> Clip:
        frames = self.get_frames(indices.tolist())
        times = self.timeline.starts_s[np.minimum(indices, self.info.num_frames - 1)]
        return Clip(frames, np.round(times, 6), self.info)

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def as_indices(indices: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(indices, dtype=np.int64).reshape(-1)
    if array.size and array.min() < 0:
        raise ValueError(f"frame indices must be >= 0, got {int(array.min())}")
    return array


def check_short_side(short_side: int | None) -> None:
    if short_side is not None and short_side < 1:
        raise ValueError(f"short_side must be >= 1, got {short_side}")


def empty_frames(info: VideoInfo) -> np.ndarray:
    return np.zeros((0, info.height, info.width, 3), dtype=np.uint8)
