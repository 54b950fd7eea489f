"""Choosing a backend: ``open_video``, PyAV first with decord as a fallback, and sampling."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xmodal.data.sampling import FrameSampler, TSNSampler
from xmodal.data.video.base import Clip, VideoSource, check_short_side
from xmodal.data.video.decord_backend import DecordSource, import_decord
from xmodal.data.video.errors import check_path
from xmodal.data.video.pyav_backend import PyAVSource
from xmodal.errors import ConfigError, VideoDecodeError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "decord", "pyav")


class AutoSource(VideoSource):
    """PyAV first, decord when PyAV cannot open the file or decode the frames asked for.

    PyAV's reader picks, per file and per request, between one sequential pass and seeks, and
    measured at least as fast as decord's ``get_batch`` on every benchmark kind
    (docs/performance.md); decord also misreads several kinds of file (see its module).
    ``backend`` says which one is serving.
    """

    def __init__(self, path: str | os.PathLike[str], *, short_side: int | None = None) -> None:
        check_short_side(short_side)
        self.path = Path(path)
        check_path(self.path)
        self._short_side = short_side
        self._inner: VideoSource
        try:
            self._inner = PyAVSource(self.path, short_side=short_side)
        except VideoDecodeError as exc:
            self._inner = self._decord(exc)
        self.backend = self._inner.backend
        self.info = self._inner.info
        self.timeline = self._inner.timeline

    def _decord(self, cause: VideoDecodeError) -> VideoSource:
        """decord after PyAV failed; if decord fails too, both reasons are kept."""
        log.info("%s: %s; trying decord", self.path, cause.reason)
        try:
            source = DecordSource(self.path, short_side=self._short_side)
        except ImportError:
            raise cause from None
        except VideoDecodeError as exc:
            raise VideoDecodeError(self.path, f"{cause.reason}; {exc.reason}") from exc
        if getattr(source, "reads_in_order", False):
            log.info("%s: decord cannot seek in it either; reading it in order", self.path)
        return source

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        try:
            frames = self._inner.get_frames(indices)
        except VideoDecodeError as exc:
            if self._inner.backend != "pyav":
                raise
            self._inner.close()
            self._inner = self._decord(exc)
            self.backend = self._inner.backend
            self.timeline = self._inner.timeline
            frames = self._inner.get_frames(indices)
        self.info = self._inner.info
        return frames

    def close(self) -> None:
        self._inner.close()


def open_video(
    path: str | os.PathLike[str], backend: str = "auto", *, short_side: int | None = None
) -> VideoSource:
    """Open a video with "decord", "pyav" or "auto" (PyAV, falling back to decord).

    ``short_side`` shrinks every larger frame as it is decoded, exactly as the model's
    preprocessing would resize the clip (shorter side = short_side, aspect kept, torchvision's
    antialiased bilinear ``Resize``), so large frames never pile up at full size; frames
    already that small are returned as they are (turned upright, with square pixels).
    """
    if backend == "auto":
        return AutoSource(path, short_side=short_side)
    if backend == "pyav":
        return PyAVSource(path, short_side=short_side)
    if backend == "decord":
        try:
            import_decord()
        except ImportError as exc:
            raise ConfigError(
                "video backend 'decord' is not installed (pip install decord2); use 'pyav'"
            ) from exc
        return DecordSource(path, short_side=short_side)
    raise ConfigError(f"unknown video backend {backend!r}; choose one of: {', '.join(BACKENDS)}")


def read_clip(
    path: str | os.PathLike[str],
    sampler: FrameSampler,
    *,
    backend: str = "auto",
    rng: np.random.Generator | None = None,
    short_side: int | None = None,
) -> Clip:
    """Open, sample slots of the video's time span, decode the frames on screen at them."""
    with open_video(path, backend, short_side=short_side) as source:
        return source.read_slots(sampler(source.info.num_frames, rng=rng))


def sample_frames(path: str | os.PathLike[str], frames: int = 8, backend: str = "auto") -> Clip:
    """The ``frames`` frames xmodal's inference sees in a video (TSN segment centres over the
    time a player shows), at full resolution, upright and at the display aspect.

    Returns a ``Clip``: ``.frames`` (T, H, W, 3) uint8 RGB, ``.times_s`` (T,) presentation
    times in seconds, ``.info`` (chosen stream, frame count, duration, size). Raises
    VideoDecodeError for a file that cannot be read and ConfigError for a bad backend.
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    return read_clip(path, TSNSampler(frames, train=False), backend=backend)
