"""PyAV backend: decodes only up to the frames asked for, seeking when they are sparse.

Frames are named by their presentation timestamps, matched against the timeline from the
probe's demux pass, so edit lists, variable frame rates and lying headers give the frame a
player shows. Streams whose timestamps restart or are missing are decoded in order and their
frames counted.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from xmodal.data.video import probe as probing
from xmodal.data.video.base import (
    VideoInfo,
    VideoSource,
    as_indices,
    check_short_side,
    decoder_threads,
    empty_frames,
)
from xmodal.data.video.errors import check_path, one_line
from xmodal.data.video.geometry import output_size, to_display
from xmodal.errors import VideoDecodeError

log = logging.getLogger(__name__)

SeekStrategy = Literal["auto", "sequential", "seek"]

# Seeking costs a decoder flush; skip it when it would save only a few frames.
_MIN_FRAMES_SAVED_BY_SEEK = 4
# Frames to aim before the keyframe when seeking in a file without an index (MPEG-TS, PS):
# FFmpeg then searches by timestamp and can land a little after the aim.
_UNINDEXED_SEEK_MARGIN = 8
_MAX_UNINDEXED_SEEK_MARGIN = 64
# Frames before a wanted frame from which every frame is decoded again (H.264 reorders at most 16).
_REORDER_MARGIN = 16
# swscale runs on the calling thread only: decoding already runs in several processes, and a
# thread pool made before a fork is gone in the child. PyAV 18.1.1 converts every frame of a
# thread with one shared swscale context and its own threads, so a DataLoader or `label` worker
# forked after the parent had decoded waited forever on them; each source keeps its own.
# PyAV gained the option in 17; before, swscale was single-threaded anyway.
@functools.cache
def _swscale_options() -> dict[str, int]:
    """Keyword arguments for ``VideoReformatter.reformat`` that keep swscale on one thread."""
    import av

    return {"threads": 1} if int(av.__version__.split(".")[0]) >= 17 else {}


# Demuxers whose seek to the first timestamp lands exactly on the first frame (they index the
# file), so the probe's container is reused instead of opening the file again.
_REWINDABLE = frozenset({"mov", "matroska", "avi"})


@dataclass
class _DecodePosition:
    """Where PyAV's decoder is: the frame iterator, last index decoded, whether we seeked."""

    frames: Iterator[Any] | None = None
    index: int | None = -1  # None: unknown (just seeked)
    seeked: bool = False


class PyAVSource(VideoSource):
    """PyAV backend: tolerant of broken files; decodes only up to the frames asked for.

    ``strategy`` "auto" decodes straight through when the wanted frames are dense
    relative to the keyframe interval and seeks when they are sparse; "sequential"
    and "seek" force one way (both return the same frames; tests compare them).
    """

    backend = "pyav"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        short_side: int | None = None,
        strategy: SeekStrategy = "auto",
    ) -> None:
        check_short_side(short_side)  # before anything is opened
        self.path = Path(path)
        check_path(self.path)
        if strategy not in ("auto", "sequential", "seek"):
            raise ValueError(f"unknown PyAV strategy {strategy!r}")
        self._strategy = strategy
        self._short_side = short_side
        self._container: Any = None
        self._indexed: bool | None = None
        self._seek_margin = _UNINDEXED_SEEK_MARGIN
        self._reformatter: Any = None
        self._open(self._scanned_container())
        self.timeline = self._probe.timeline
        self._may_skip = self.timeline.identifies_by_pts
        self._can_seek = strategy != "sequential" and self.timeline.identifies_by_pts
        p = self._probe
        self.info = VideoInfo(self.timeline.num_frames, p.fps, self.timeline.duration_s,
                              *self._output_size(), stream=p.stream_index, codec=p.codec)

    # -- opening ------------------------------------------------------------------
    def _scanned_container(self) -> Any:
        """Probe the file (its demux pass), reusing the container for decoding where it can be
        rewound to the first frame exactly (indexed formats); else a fresh one is opened."""
        import av

        self._probe = probing.cached(self.path)
        if self._probe is not None:
            return None
        container = probing.open_container(self.path)
        try:
            self._probe = probing.probe(self.path, container)
            if container.format.name.split(",")[0] not in _REWINDABLE:
                container.close()
                return None
            stream = container.streams[self._probe.stream_index]
            container.seek(stream.start_time or 0, stream=stream, backward=True)
            return container
        except (av.FFmpegError, OSError, ValueError) as exc:
            log.debug("%s: not rewound after the probe (%s)", self.path, one_line(exc))
            container.close()
            return None
        except BaseException:
            container.close()
            raise

    def _open(self, container: Any = None) -> None:
        self.close()
        self._container = container or probing.open_container(self.path)
        probing.only_read(self._container, [self._probe.stream_index])
        self._stream = self._container.streams[self._probe.stream_index]
        # PyAV's slice threading is kept: frame threading ("AUTO") measured 1.3-1.7x slower
        # for 8 spread-out frames (it refills its pipeline after every seek and decodes ahead
        # past the last wanted frame).
        self._stream.codec_context.thread_count = decoder_threads()
        self._load_keyframe_index()
        self._pos = _DecodePosition()
        self._last: tuple[int, Any] | None = None  # (index, frame) last decoded
        self._pending: Any = None
        self._skipping = False
        # Peek at the first frame: it proves the file decodes at all, and carries the display
        # matrix.
        first = self._pull()
        if first is None:
            self.close()
            raise VideoDecodeError(self.path, "no frame could be decoded")
        self._pending = first
        self._orientation = probing.orientation_of(first)

    def _load_keyframe_index(self) -> None:
        """Matroska/WebM read their keyframe index (cues) on the first seek only; seek to the
        start once so FFmpeg's seeks land on keyframes from the first request."""
        if "matroska" not in self._container.format.name:
            return
        import av

        try:
            self._container.seek(self._stream.start_time or 0, stream=self._stream, backward=True)
        except (av.FFmpegError, OSError, ValueError) as exc:
            log.debug("%s: no keyframe index (%s)", self.path, one_line(exc))

    def _has_index(self) -> bool:
        """Whether the container indexed the whole stream up front (MP4, MOV, AVI, MKV cues),
        so FFmpeg's seek lands on the keyframe asked for; decided once, as demuxers of other
        formats add entries while they read."""
        if self._indexed is None:
            entries = getattr(self._stream, "index_entries", None)
            pts = self.timeline.pts
            end_pts = pts[len(pts) // 2] if pts is not None else 0
            self._indexed = bool(entries is not None and len(entries) >= 2
                                 and entries[len(entries) - 1].timestamp >= end_pts)
        return self._indexed

    # -- index <-> timestamp ----------------------------------------------------
    def _index_of(self, frame: Any) -> int | None:
        if frame.pts is None or not self.timeline.identifies_by_pts:
            return None if self._pos.index is None else self._pos.index + 1
        return self.timeline.index_of_pts(frame.pts)

    def _pts_of(self, index: int) -> int:
        pts = self.timeline.pts
        assert pts is not None  # seeking needs timestamps
        return int(pts[min(index, len(pts) - 1)])

    # -- decoding ---------------------------------------------------------------
    def _should_seek(self, target: int) -> bool:
        pos = self._pos.index
        if not self._can_seek:
            return False
        if self._strategy == "seek" or pos is None or target <= pos:
            return True
        return self.timeline.keyframe_before(target) - pos > _MIN_FRAMES_SAVED_BY_SEEK

    def _seek(self, target: int) -> None:
        import av

        aim = target
        if not self._has_index():
            # Without an index FFmpeg seeks by timestamp search (MPEG-TS, MPEG-PS) and lands
            # on a packet near the aim; decoding resumes at the next keyframe, which must not
            # lie past the target. Aim a little before the keyframe there.
            aim = max(0, self.timeline.keyframe_before(target) - self._seek_margin)
        try:
            self._container.seek(self._pts_of(aim), stream=self._stream, backward=True)
        except (av.FFmpegError, OSError, ValueError) as exc:
            log.debug("%s: seek failed (%s); decoding sequentially", self.path, one_line(exc))
            self._restart()
            return
        self._pending = None
        self._pos = _DecodePosition(frames=None, index=None, seeked=True)

    def _restart(self) -> None:
        """Reopen and decode from the first frame, never seeking again (the safe path)."""
        self._open()
        self._can_seek = False

    def _pull(self) -> Any:
        """Next decoded av.VideoFrame, or None at the end or where the stream breaks."""
        import av

        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        if self._pos.frames is None:
            self._pos.frames = self._container.decode(self._stream)
        try:
            return next(self._pos.frames)
        except StopIteration:
            return None
        except (av.FFmpegError, OSError, ValueError, RuntimeError) as exc:
            log.info("%s: decoding stopped part-way (%s)", self.path, one_line(exc))
            return None

    def _next_frame(self) -> tuple[int, Any] | None:
        """Next decoded (index, frame), or None at the end or where the stream breaks."""
        frame = self._pull()
        if frame is None:
            return None
        index = self._index_of(frame)
        if index is None:
            return None
        return index, frame

    def _decode_until(self, target: int) -> tuple[int, Any] | None:
        """Decode forward to the first frame whose index is >= target; None at the end."""
        skipped = False
        while True:
            far = self._pos.index is not None and target - self._pos.index > _REORDER_MARGIN
            skipped |= self._skip_unreferenced(far)
            item = self._next_frame()
            if item is None:
                if skipped:  # the real last frame may have been skipped: find it again
                    self._may_skip = False
                    self._restart()
                    return self._decode_until(target)
                return None
            index, frame = item
            if self._pos.index is None and (index > target or not frame.key_frame):
                return None  # the seek did not land on a keyframe before the target
            self._pos.index = index
            self._last = item
            if index >= target:
                return item

    def _skip_unreferenced(self, on: bool) -> bool:
        """Let FFmpeg skip frames no other frame refers to (non-reference B-frames) while the
        target is far ahead: about half of x264's frames, 30% of a sequential pass's CPU time.
        Needs timestamps (indices come from them) and stops ``_REORDER_MARGIN`` frames before
        the target, more than any decoder's reordering delay, so wanted frames are decoded."""
        on = on and self._may_skip
        if on != self._skipping:
            self._stream.codec_context.skip_frame = "NONREF" if on else "DEFAULT"
            self._skipping = on
        return on

    def _find(self, target: int) -> tuple[int, Any] | None:
        """The frame for ``target``; at the end (or if a seek misbehaved) decode from the start."""
        if self._should_seek(target):
            self._seek(target)
        elif self._pos.index is not None and target <= self._pos.index:
            self._restart()
        item = self._decode_until(target)
        while item is None and self._pos.seeked and self._widen_seek_margin():
            self._seek(target)
            item = self._decode_until(target)
        if item is None and self._pos.seeked:
            self._restart()
            item = self._decode_until(target)
        return item

    def _widen_seek_margin(self) -> bool:
        """After a seek without an index overshot the target, aim twice as far back next time
        (timestamp search in MPEG-TS is coarser in small files); False once that stops paying."""
        if self._has_index() or self._seek_margin >= _MAX_UNINDEXED_SEEK_MARGIN:
            return False
        self._seek_margin *= 2
        return True

    def _output_size(self) -> tuple[int, int]:
        """(width, height) of the frames get_frames returns: upright, square pixels, resized."""
        p = self._probe
        return output_size(p.width, p.height, p.sar, self._orientation, self._short_side)

    def _to_array(self, frame: Any) -> np.ndarray:
        """One decoded frame as the (H, W, 3) uint8 RGB array get_frames returns."""
        width, height = self._probe.width, self._probe.height
        if width <= 0 or height <= 0:  # size unknown from the header: take the first frame's
            self._probe = replace(self._probe, width=frame.width, height=frame.height)
            shown = self._output_size()
            self.info = replace(self.info, width=shown[0], height=shown[1])
            width, height = frame.width, frame.height
        if self._reformatter is None:
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()
        # Always pass the size: streams may change resolution part-way, batches may not.
        rgb = self._reformatter.reformat(frame, width=width, height=height, format="rgb24",
                                         **_swscale_options())
        array = rgb.to_ndarray()
        return to_display(array, self._probe.sar, self._orientation, self._short_side)

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        wanted = as_indices(indices)
        if self._container is None:
            raise ValueError(f"{self.path}: video is closed")
        if wanted.size == 0:
            return empty_frames(self.info)
        wanted = np.minimum(wanted, self.info.num_frames - 1)
        got: dict[int, np.ndarray] = {}
        for target in np.unique(wanted).tolist():
            if target in got:
                continue
            item = self._find(target)
            if item is None:
                break
            index, frame = item
            array = self._to_array(frame)
            # A frame that did not decode (a damaged packet) is stood in for by the next one.
            for other in wanted[(wanted >= target) & (wanted <= index)].tolist():
                got[other] = array
        missing = [i for i in wanted.tolist() if i not in got]
        if missing:
            self._fill_past_end(missing, got)
        return np.stack([got[i] for i in wanted.tolist()])

    def _fill_past_end(self, missing: list[int], got: dict[int, np.ndarray]) -> None:
        """The stream ended (or broke) before these indices: clamp them to its last frame."""
        if self._last is None:
            raise VideoDecodeError(self.path, "no frame could be decoded")
        end, frame = self._last
        log.info("%s: %d frames were demuxed, only %d decode", self.path, self.info.num_frames,
                 end + 1)
        # Later calls clamp to the real end up front, so they never decode past it again.
        if end + 1 < self.info.num_frames:
            num = end + 1
            duration = float(self.timeline.starts_s[min(num, self.timeline.num_frames - 1)])
            self.info = replace(self.info, num_frames=num, duration_s=duration or num / self.info.fps)
        last = self._to_array(frame)
        for i in missing:
            got[i] = last

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
