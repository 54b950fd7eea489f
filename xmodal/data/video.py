"""Decode sampled video frames with decord or PyAV behind one small interface.

Real files lie about their frame counts, break part-way and come in old codecs,
so every backend clamps indices past the real end to the last decodable frame,
and "auto" falls back from PyAV to decord for a file PyAV cannot read. decord and av are
imported lazily so ``import xmodal`` stays fast.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np

from xmodal.data.sampling import FrameSampler
from xmodal.errors import ConfigError, VideoDecodeError, missing_reason

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp",
     ".ogv", ".ts"}
)
BACKENDS = ("auto", "decord", "pyav")

# Assumed keyframe interval when the container has no index (x264's default keyint).
_DEFAULT_KEYFRAME_INTERVAL = 250
# Seeking costs a decoder flush; skip it when it would save only a few frames.
_MIN_FRAMES_SAVED_BY_SEEK = 4
# Frames to aim before the expected keyframe when seeking in a file without an index
# (B-frame reordering puts the keyframe's packet after frames shown before it).
_UNINDEXED_SEEK_MARGIN = 8
_MAX_UNINDEXED_SEEK_MARGIN = 64
# Frames before a wanted frame from which every frame is decoded again (H.264 reorders at most 16).
_REORDER_MARGIN = 16
_FALLBACK_FPS = 25.0
# decord prefixes its messages with "[HH:MM:SS] /src/file.cc:LINE: ", which would make the
# recorded reason differ from run to run.
_DECORD_LOG_PREFIX = re.compile(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ")
# ...and its failed assertions with the C++ expression: "Check failed: f(&x, ...) >= 0 (-22 vs. 0)
# Cannot create buffer source"; the words after it are the reason.
_DECORD_CHECK = re.compile(r"Check failed: .*? \(-?\d+ vs\. -?\d+\)\s*")

SeekStrategy = Literal["auto", "sequential", "seek"]

# Threads each decoder may use; 0 lets FFmpeg pick (one per core). Worker processes set 1:
# N workers x 1 thread fill N cores, where N workers x N threads would fight over them.
_decoder_threads = 0


def set_decoder_threads(threads: int) -> None:
    """Threads per decoder opened from now on in this process (0: FFmpeg's choice)."""
    global _decoder_threads
    _decoder_threads = max(0, int(threads))


@dataclass(frozen=True)
class VideoInfo:
    """What a backend knows about a video; width/height are those of the returned frames."""

    num_frames: int
    fps: float
    duration_s: float
    width: int
    height: int


class VideoSource(ABC):
    """An open video that returns frames by index; use as a context manager."""

    backend: str
    info: VideoInfo
    path: Path

    @abstractmethod
    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """(len(indices), H, W, 3) uint8 RGB in the order asked; past-the-end indices clamp."""

    @abstractmethod
    def close(self) -> None:
        """Release the decoder; safe to call twice."""

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _one_line(exc: BaseException, path: Path | None = None) -> str:
    """An exception as a short single line, without the path the caller already prints."""
    text = getattr(exc, "strerror", None) or str(exc)  # FFmpeg errors: drop "[Errno N]" and path
    if path is not None:
        text = text.replace(f"'{path}'", "").replace(str(path), "")
    text = _DECORD_CHECK.sub("", _DECORD_LOG_PREFIX.sub("", text))
    text = " ".join(text.split()).strip(" :.") or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """decord's C++ logs every failure to fd 2 itself ("[12:00:00] video_reader.cc:86: ERROR
    ..."), around our one-line message; the reason still reaches the user, once, through the
    exception. XMODAL_DEBUG=1 keeps them, with the tracebacks."""
    saved = None
    if not os.environ.get("XMODAL_DEBUG"):
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no usable fd 2: nothing to silence
            saved = None
    if saved is None:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _check_path(path: Path) -> None:
    """Reject what no decoder can read before handing it to native code (decord can abort)."""
    if not path.exists():
        raise VideoDecodeError(path, missing_reason(path))
    if path.is_dir():
        raise VideoDecodeError(path, "is a directory, not a video file")
    if not os.access(path, os.R_OK):
        raise VideoDecodeError(path, "permission denied")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")


def _as_indices(indices: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(indices, dtype=np.int64).reshape(-1)
    if array.size and array.min() < 0:
        raise ValueError(f"frame indices must be >= 0, got {int(array.min())}")
    return array


def _check_short_side(short_side: int | None) -> None:
    if short_side is not None and short_side < 1:
        raise ValueError(f"short_side must be >= 1, got {short_side}")


def _resized(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(width, height) of a ``width`` x ``height`` frame once ``_shrink`` has resized it."""
    if short_side is None or width <= 0 or height <= 0 or min(width, height) <= short_side:
        return width, height
    from xmodal.data.transforms import shorter_side_shape

    new_h, new_w = shorter_side_shape(height, width, short_side)
    return new_w, new_h


def _shrink(frame: np.ndarray, short_side: int | None) -> np.ndarray:
    """One (H, W, 3) frame shrunk as the model's preprocessing resizes a clip (torchvision's
    ``Resize(short_side, antialias=True)``, pixel-equal), as soon as it is decoded: a stack
    of full-size frames is never built (8 frames of 1080p: 50 MB, costlier to allocate than
    to resize). Smaller frames are left as they are: enlarging them adds nothing here, and
    is cheaper batched, later."""
    if short_side is None or min(frame.shape[:2]) <= short_side:
        return frame
    import torch

    from xmodal.data.transforms import resize_shorter_side

    chw = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)
    return resize_shorter_side(chw, short_side).permute(1, 2, 0).numpy()


def _empty(info: VideoInfo) -> np.ndarray:
    return np.zeros((0, info.height, info.width, 3), dtype=np.uint8)


def _quarter_turns(frame: Any) -> int:
    """Counter-clockwise quarter turns that show a decoded frame upright.

    Phones store portrait video as landscape frames plus a display matrix; a classifier
    must see what the user sees, as EXIF orientation is applied to photos.
    """
    degrees = getattr(frame, "rotation", 0) or 0
    return round(degrees / 90) % 4


def _upright(frames: np.ndarray, turns: int) -> np.ndarray:
    """Rotate (..., H, W, C) frames by ``turns`` counter-clockwise quarter turns."""
    return np.ascontiguousarray(np.rot90(frames, turns, axes=(-3, -2))) if turns else frames


def _displayed(width: int, height: int, turns: int) -> tuple[int, int]:
    return (height, width) if turns % 2 else (width, height)


@dataclass(frozen=True)
class _Probe:
    """What PyAV's header (and first frame) say about the stored frames."""

    width: int
    height: int
    turns: int
    container: str


def _probe(path: Path) -> _Probe | None:
    """The stored frames' size, quarter turns and the container format; None if unreadable.

    The size comes from the header; the rotation rides on decoded frames, so the first
    frame is decoded (a keyframe: a millisecond or two).
    """
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            ctx = container.streams.video[0].codec_context
            if ctx.width <= 0 or ctx.height <= 0:
                return None
            first = next(container.decode(video=0), None)
            return _Probe(ctx.width, ctx.height, _quarter_turns(first), container.format.name)
    except Exception:  # noqa: BLE001 - any failure just means "unknown"
        return None


class DecordSource(VideoSource):
    """decord backend: fast batched random access; every decord error -> VideoDecodeError."""

    backend = "decord"

    def __init__(self, path: str | os.PathLike[str], *, short_side: int | None = None) -> None:
        _check_short_side(short_side)
        self.path = Path(path)
        _check_path(self.path)
        import decord

        self._decord = decord
        native = _probe(self.path)
        if native and native.turns:
            # decord 3.4 turns such frames but then scales them back to the stored shape
            # (or fails in get_batch when asked for the upright shape).
            raise VideoDecodeError(self.path, f"decord cannot decode a rotated video "
                                              f"({90 * native.turns} degrees) upright")
        if native and native.container == "mpegts":
            # Measured with decord 3.4: seeks in MPEG-TS with 8 s keyframe intervals hang or
            # fail after seconds ("Unable to handle EOF"); PyAV reads them.
            raise VideoDecodeError(self.path, "decord cannot seek reliably in MPEG-TS; "
                                              "use --video-backend pyav or auto")
        self._short_side = short_side
        self._reader: Any = self._guarded(self._new_reader, "decord cannot open it")
        num_frames = len(self._reader)
        fps = float(self._reader.get_avg_fps()) or _FALLBACK_FPS
        if native is None:  # the header probe failed: learn the size from frame 0
            height, width = self._batch([0]).shape[1:3]
        else:
            width, height = native.width, native.height
        # decord mis-seeks in files whose frames carry no timestamps (H.264 in AVI): it
        # silently returns frames of the wrong GOP, so such files are read in order instead.
        self.reads_in_order = not self._guarded(self._has_timestamps, "decord cannot index it")
        self.info = VideoInfo(num_frames, fps, num_frames / fps,
                              *_resized(width, height, short_side))

    def _guarded(self, call: Callable[[], Any], what: str) -> Any:
        """Run a decord call, turning whatever it raises into a one-line VideoDecodeError."""
        try:
            with _native_stderr_silenced():
                return call()
        except VideoDecodeError:
            raise
        except Exception as exc:  # noqa: BLE001 - decord raises assorted types
            raise VideoDecodeError(self.path, f"{what} ({_one_line(exc, self.path)})") from exc

    def _new_reader(self) -> Any:
        # decord can scale in the decoder (width=, height=): its pixels differ from the
        # model's resize, and it measured no faster than resizing the decoded frames.
        return self._decord.VideoReader(str(self.path), ctx=self._decord.cpu(0),
                                        num_threads=_decoder_threads)

    def _has_timestamps(self) -> bool:
        stamps = self._reader.get_frame_timestamp(range(len(self._reader)))
        return bool(np.isfinite(stamps).all() and stamps.min() > -1e6)

    @staticmethod
    def _to_numpy(batch: Any) -> np.ndarray:
        # decord returns its own NDArray, or a torch tensor if a global bridge was set.
        array = batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)
        return np.ascontiguousarray(array, dtype=np.uint8)

    def _batch(self, indices: list[int]) -> np.ndarray:
        batch = self._guarded(lambda: self._reader.get_batch(indices), "decord failed to decode")
        return self._to_numpy(batch)

    def _read_in_order(self, indices: list[int]) -> np.ndarray:
        """Decode from frame 0 with a fresh reader (no seeking); past-the-end indices clamp."""
        reader = self._guarded(self._new_reader, "decord cannot open it")
        wanted, got, last = set(indices), {}, None
        for pos in range(max(indices) + 1):
            try:
                with _native_stderr_silenced():
                    last = reader.next()
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001 - decord raises assorted types
                if last is None:
                    reason = f"decord failed to decode ({_one_line(exc, self.path)})"
                    raise VideoDecodeError(self.path, reason) from exc
                log.info("%s: decoding stopped part-way (%s)", self.path, _one_line(exc))
                break
            if pos in wanted:
                got[pos] = self._to_numpy(last)
        if last is None:
            raise VideoDecodeError(self.path, "no frame could be decoded")
        end = self._to_numpy(last)
        return np.stack([got.get(i, end) for i in indices])

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        wanted = _as_indices(indices)
        if self._reader is None:
            raise ValueError(f"{self.path}: video is closed")
        if wanted.size == 0:
            return _empty(self.info)
        clamped = np.minimum(wanted, self.info.num_frames - 1).tolist()
        frames = self._read_in_order(clamped) if self.reads_in_order else self._batch(clamped)
        if self._short_side is None:
            return frames
        return np.stack([_shrink(frame, self._short_side) for frame in frames])

    def close(self) -> None:
        self._reader = None


def _extrapolated_keyframe(seen: list[int], index: int) -> int | None:
    """Where the keyframe before ``index`` should be if the stream keeps the keyframe interval
    seen so far (encoders use a fixed one); None before two keyframes were seen."""
    if len(seen) < 2 or seen[-1] - seen[-2] <= 0:
        return None
    last, interval = seen[-1], seen[-1] - seen[-2]
    if index <= last:
        return max(k for k in seen if k <= index) if seen[0] <= index else None
    return last + (index - last) // interval * interval


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
        _check_short_side(short_side)  # before anything is opened
        self.path = Path(path)
        _check_path(self.path)
        if strategy not in ("auto", "sequential", "seek"):
            raise ValueError(f"unknown PyAV strategy {strategy!r}")
        self._strategy = strategy
        self._indexed: bool | None = None
        self._may_skip = True
        self._container: Any = None
        self._start_pts: int = 0
        self._open()
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self._rate = Fraction(rate) if rate else Fraction(_FALLBACK_FPS)
        self._time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1000)
        self._frames_per_tick = float(self._time_base * self._rate)
        self._can_seek = strategy != "sequential"
        self._seek_margin = _UNINDEXED_SEEK_MARGIN
        ctx = stream.codec_context
        self._decode_size = (ctx.width, ctx.height)
        self._short_side = short_side
        fps = float(self._rate)
        num_frames, duration = self._count_frames(fps)
        self.info = VideoInfo(num_frames, fps, duration, *self._output_size())

    # -- opening and counting -------------------------------------------------
    def _open(self) -> None:
        import av

        self.close()
        try:
            container = av.open(str(self.path), metadata_errors="ignore")
        except Exception as exc:  # noqa: BLE001 - FFmpeg/OS/Unicode errors all mean "unreadable"
            reason = f"not a readable video ({_one_line(exc, self.path)})"
            raise VideoDecodeError(self.path, reason) from exc
        if not container.streams.video:
            container.close()
            raise VideoDecodeError(self.path, "the file has no video stream")
        self._container = container
        self._stream = container.streams.video[0]
        # PyAV's slice threading is kept: frame threading ("AUTO") measured 1.3-1.7x slower
        # for 8 spread-out frames (it refills its pipeline after every seek and decodes ahead
        # past the last wanted frame).
        self._stream.codec_context.thread_count = _decoder_threads
        self._load_keyframe_index()
        self._pos = _DecodePosition()
        self._last: tuple[int, Any] | None = None  # (index, frame) last decoded
        self._pending: Any = None
        self._keyframes: set[int] = set()  # keyframe indices seen while decoding
        # Peek at the first frame: it proves the file decodes at all, and its pts is the
        # origin of frame indices (stream.start_time can disagree, e.g. H.264 in AVI).
        first = self._pull()
        if first is None:
            self.close()
            raise VideoDecodeError(self.path, "no frame could be decoded")
        self._pending = first
        self._turns = _quarter_turns(first)
        self._skipping = False
        if first.pts is not None:
            self._start_pts = first.pts
        else:
            self._may_skip = False  # indices are counted: every frame must be seen

    def _load_keyframe_index(self) -> None:
        """Matroska/WebM read their keyframe index (cues) on the first seek only; seek to the
        start once so the seek-or-decode choice knows the keyframes from the first request."""
        if "matroska" not in self._container.format.name:
            return
        import av

        try:
            self._container.seek(self._stream.start_time or 0, stream=self._stream, backward=True)
        except (av.FFmpegError, OSError, ValueError) as exc:
            log.debug("%s: no keyframe index (%s)", self.path, _one_line(exc))

    def _count_frames(self, fps: float) -> tuple[int, float]:
        """Header frame count, else duration*fps, else a demux pass (packets, no decoding)."""
        stream, container = self._stream, self._container
        duration = 0.0
        if stream.duration:
            duration = float(stream.duration * self._time_base)
        elif container.duration:
            duration = container.duration / 1_000_000  # AV_TIME_BASE
            if "matroska" in container.format.name:
                # Matroska's duration runs from timestamp 0, not from the first frame.
                duration = max(0.0, duration - float(self._start_pts * self._time_base))
        count = stream.frames if stream.frames and stream.frames > 0 else round(duration * fps)
        if count <= 0:
            count = self._count_packets()
        if count <= 0:
            raise VideoDecodeError(self.path, "the video stream has no frames")
        return count, duration or count / fps

    def _count_packets(self) -> int:
        import av

        count = 0
        try:
            for packet in self._container.demux(self._stream):
                count += 1 if packet.size else 0
        except (av.FFmpegError, OSError, ValueError) as exc:
            log.debug("%s: demuxing stopped part-way (%s)", self.path, _one_line(exc))
        self._open()
        return count

    # -- index <-> timestamp ----------------------------------------------------
    def _index_of(self, frame: Any) -> int | None:
        if frame.pts is None:
            return None if self._pos.index is None else self._pos.index + 1
        return round((frame.pts - self._start_pts) * self._frames_per_tick)

    def _pts_of(self, index: int) -> int:
        return self._start_pts + math.floor(index / (self._time_base * self._rate))

    def _has_index(self) -> bool:
        """Whether the container indexed the whole stream up front (MP4, MOV, AVI, MKV cues);
        decided once, as demuxers of other formats add entries while they read."""
        if self._indexed is None:
            entries = getattr(self._stream, "index_entries", None)
            duration = self._stream.duration or (
                (self._container.duration or 0) / 1_000_000 / self._time_base)
            end_pts = self._start_pts + duration * 0.5
            self._indexed = bool(entries is not None and len(entries) >= 2
                                 and entries[len(entries) - 1].timestamp >= end_pts)
        return self._indexed

    def _keyframe_before(self, index: int) -> int | None:
        """The last keyframe at or before ``index``: from the container's index, else guessed
        from the keyframes decoded so far (MPEG-TS has no index), else unknown."""
        entries = self._stream.index_entries if self._has_index() else None
        if entries is not None:
            pos = entries.search_timestamp(self._pts_of(index), backward=True)
            if pos >= 0:
                return round((entries[pos].timestamp - self._start_pts) * self._frames_per_tick)
        return _extrapolated_keyframe(sorted(self._keyframes), index)

    # -- decoding ---------------------------------------------------------------
    def _should_seek(self, target: int) -> bool:
        pos = self._pos.index
        if not self._can_seek:
            return False
        if self._strategy == "seek" or pos is None or target <= pos:
            return True
        keyframe = self._keyframe_before(target)
        if keyframe is not None:
            return keyframe - pos > _MIN_FRAMES_SAVED_BY_SEEK
        return target - pos > _DEFAULT_KEYFRAME_INTERVAL

    def _seek(self, target: int) -> None:
        import av

        aim = target
        if not self._has_index():
            # Without an index FFmpeg seeks by timestamp search (MPEG-TS, MPEG-PS) and lands
            # on a packet near the aim; decoding resumes at the next keyframe, which must not
            # lie past the target. Aim a little before the keyframe expected there.
            keyframe = self._keyframe_before(target)
            aim = max(0, (target if keyframe is None else keyframe) - self._seek_margin)
        try:
            self._container.seek(self._pts_of(aim), stream=self._stream, backward=True)
        except (av.FFmpegError, OSError, ValueError) as exc:
            log.debug("%s: seek failed (%s); decoding sequentially", self.path, _one_line(exc))
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
            log.info("%s: decoding stopped part-way (%s)", self.path, _one_line(exc))
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
            if frame.key_frame:
                self._keyframes.add(index)
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
        """(width, height) of the frames get_frames returns: upright, then resized."""
        return _resized(*_displayed(*self._decode_size, self._turns), self._short_side)

    def _to_array(self, frame: Any) -> np.ndarray:
        """One decoded frame as the (H, W, 3) uint8 RGB array get_frames returns."""
        width, height = self._decode_size
        if width <= 0 or height <= 0:  # size unknown from the header: take the first frame's
            width, height = self._decode_size = frame.width, frame.height
            shown = self._output_size()
            self.info = replace(self.info, width=shown[0], height=shown[1])
        # Always pass the size: streams may change resolution part-way, batches may not.
        array = frame.to_ndarray(format="rgb24", width=width, height=height)
        return _shrink(_upright(array, self._turns), self._short_side)

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        wanted = _as_indices(indices)
        if self._container is None:
            raise ValueError(f"{self.path}: video is closed")
        if wanted.size == 0:
            return _empty(self.info)
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
            # With variable frame rate one decoded frame can stand for several indices.
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
        log.info("%s: header says %d frames, only %d decode", self.path, self.info.num_frames,
                 end + 1)
        # Later calls clamp to the real end up front, so they never decode past it again.
        if end + 1 < self.info.num_frames:
            num = end + 1
            self.info = replace(self.info, num_frames=num, duration_s=num / self.info.fps)
        last = self._to_array(frame)
        for i in missing:
            got[i] = last

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


class AutoSource(VideoSource):
    """PyAV first, decord when PyAV cannot open the file or decode the frames asked for.

    PyAV's reader picks, per file and per request, between one sequential pass and seeks
    from the sampled indices and the keyframe interval, and measured at least as fast as
    decord's ``get_batch`` on every benchmark kind (docs/performance.md); decord also hangs
    or fails on some MPEG-TS files and mis-seeks in AVIs without timestamps. ``backend``
    says which one is serving.
    """

    def __init__(self, path: str | os.PathLike[str], *, short_side: int | None = None) -> None:
        _check_short_side(short_side)
        self.path = Path(path)
        _check_path(self.path)
        self._short_side = short_side
        self._inner: VideoSource
        try:
            self._inner = PyAVSource(self.path, short_side=short_side)
        except VideoDecodeError as exc:
            self._inner = self._decord(exc)
        self.backend = self._inner.backend
        self.info = self._inner.info

    def _decord(self, cause: VideoDecodeError) -> VideoSource:
        """decord after PyAV failed; if decord fails too, both reasons are kept."""
        log.info("%s: %s; trying decord", self.path, cause.reason)
        try:
            source = DecordSource(self.path, short_side=self._short_side)
        except ImportError:
            raise cause from None
        except VideoDecodeError as exc:
            raise VideoDecodeError(self.path, f"{cause.reason}; {exc.reason}") from exc
        if source.reads_in_order:
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
    already that small are returned as they are.
    """
    if backend == "auto":
        return AutoSource(path, short_side=short_side)
    if backend == "pyav":
        return PyAVSource(path, short_side=short_side)
    if backend == "decord":
        try:
            import decord  # noqa: F401
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
) -> tuple[np.ndarray, VideoInfo]:
    """Open, sample indices from the frame count, decode just those: ((T,H,W,3) uint8, info)."""
    with open_video(path, backend, short_side=short_side) as source:
        frames = source.get_frames(sampler(source.info.num_frames, rng=rng))
        return frames, source.info
