"""Which frames to read from a video: TSN segments, uniform spacing, sliding windows.

Everything here is pure arithmetic on frame counts (no I/O), so decoders stay
swappable and the sampling rules can be tested with plain numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from xmodal.errors import ConfigError

SAMPLER_NAMES = ("tsn", "uniform")


def _check_counts(num_frames: int, num_out: int, what: str) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_out < 1:
        raise ValueError(f"{what} must be >= 1, got {num_out}")


def tsn_indices(
    num_frames: int,
    num_segments: int,
    *,
    train: bool,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """One frame per equal segment: random inside it when training, its centre otherwise.

    Random offsets are TSN's temporal augmentation; centres make evaluation
    deterministic. Videos shorter than ``num_segments`` repeat frames.
    Returns ``num_segments`` sorted int64 indices in ``[0, num_frames)``.
    """
    _check_counts(num_frames, num_segments, "num_segments")
    seg = np.arange(num_segments, dtype=np.int64)
    if num_frames >= num_segments:
        # Integer segment borders: every segment holds >= 1 frame, so indices are distinct.
        borders = np.arange(num_segments + 1, dtype=np.int64) * num_frames // num_segments
        starts, ends = borders[:-1], borders[1:]
        if not train:
            return (starts + ends) // 2
        rng = rng if rng is not None else np.random.default_rng()
        return rng.integers(starts, ends, dtype=np.int64)
    # Fewer frames than segments: segments are shorter than a frame, so frames repeat.
    if not train:
        return (2 * seg + 1) * num_frames // (2 * num_segments)
    rng = rng if rng is not None else np.random.default_rng()
    positions = (seg + rng.random(num_segments)) * (num_frames / num_segments)
    return np.clip(np.floor(positions).astype(np.int64), 0, num_frames - 1)


def multi_clip_indices(num_frames: int, num_segments: int, clip: int, num_clips: int) -> np.ndarray:
    """Clip ``clip`` of ``num_clips`` evenly offset TSN samplings, for multi-clip testing.

    Clip k takes the frame at (2k + 1) / (2 num_clips) of each segment; clip 0 of 1 is the
    segment centres, exactly ``tsn_indices(..., train=False)``, so inference sees the frames
    training's validation saw.
    """
    _check_counts(num_frames, num_segments, "num_segments")
    if not 0 <= clip < num_clips:
        raise ValueError(f"clip must be in [0, {num_clips}), got {clip}")
    seg = np.arange(num_segments, dtype=np.int64)
    if num_frames >= num_segments:
        borders = np.arange(num_segments + 1, dtype=np.int64) * num_frames // num_segments
        starts, ends = borders[:-1], borders[1:]
        return starts + (2 * clip + 1) * (ends - starts) // (2 * num_clips)
    return (2 * num_clips * seg + 2 * clip + 1) * num_frames // (2 * num_clips * num_segments)


def uniform_indices(num_frames: int, num_samples: int) -> np.ndarray:
    """``num_samples`` evenly spaced frames, each at the centre of its share of the video.

    Returns sorted int64 indices in ``[0, num_frames)``; distinct when the video
    has at least ``num_samples`` frames, repeated otherwise.
    """
    _check_counts(num_frames, num_samples, "num_samples")
    seg = np.arange(num_samples, dtype=np.int64)
    return (2 * seg + 1) * num_frames // (2 * num_samples)


def window_bounds(
    num_frames: int, fps: float, window_s: float, stride_s: float
) -> list[tuple[int, int]]:
    """Sliding ``[start, end)`` frame windows for labelling a long video segment by segment.

    Windows start every ``stride_s`` seconds; the last one is aligned to the end
    so the tail is never dropped. A video shorter than one window gives one
    window over the whole video.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not (fps > 0 and window_s > 0 and stride_s > 0):
        raise ValueError(
            f"fps, window_s and stride_s must be > 0, got {fps}, {window_s}, {stride_s}"
        )
    window = max(1, round(window_s * fps))
    stride = max(1, round(stride_s * fps))
    if num_frames <= window:
        return [(0, num_frames)]
    last_start = num_frames - window
    starts = list(range(0, last_start, stride)) + [last_start]
    return [(start, start + window) for start in starts]


class FrameSampler(Protocol):
    """Turns a video's frame count into the indices to decode."""

    @property
    def num_frames_out(self) -> int: ...

    def __call__(
        self, num_frames: int, rng: np.random.Generator | None = None
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class TSNSampler:
    """TSN segment sampling; ``train`` switches random offsets on."""

    num_segments: int
    train: bool = False

    @property
    def num_frames_out(self) -> int:
        return self.num_segments

    def __call__(self, num_frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
        return tsn_indices(num_frames, self.num_segments, train=self.train, rng=rng)


@dataclass(frozen=True)
class UniformSampler:
    """Evenly spaced frames, identical for training and evaluation."""

    num_samples: int

    @property
    def num_frames_out(self) -> int:
        return self.num_samples

    def __call__(self, num_frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
        return uniform_indices(num_frames, self.num_samples)


def make_sampler(name: str, num_frames: int, train: bool) -> FrameSampler:
    """Build a sampler from its config/CLI name ("tsn" or "uniform")."""
    if num_frames < 1:
        raise ConfigError(f"frames per clip must be >= 1, got {num_frames}")
    if name == "tsn":
        return TSNSampler(num_frames, train=train)
    if name == "uniform":
        return UniformSampler(num_frames)
    raise ConfigError(f"unknown frame sampler {name!r}; choose one of: {', '.join(SAMPLER_NAMES)}")
