"""decord backend: fast batched random access, used only where its frames can be trusted.

decord numbers frames by its own index and shows none of the file's display matrix, pixel
aspect or edit list; on open-GOP HEVC its seeks return frames up to 56 positions off without an
error (measured with decord 3.4). Such files are refused with a one-line reason (``auto``
reads them with PyAV), and decord's frame times must agree with the probe's timeline.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
from xmodal.data.video.errors import check_path, native_stderr_silenced, one_line
from xmodal.data.video.geometry import IDENTITY, output_size, to_display
from xmodal.data.video.timeline import Timeline, counted_timeline
from xmodal.errors import VideoDecodeError

log = logging.getLogger(__name__)


def import_decord() -> Any:
    """``import decord``, with PyTorch loaded first.

    decord loads its library (and the FFmpeg it bundles) with ``RTLD_GLOBAL``; loaded before
    torch, it makes later PyTorch work crash (dmlc/decord#293, #324, #329; MMAction2 moved its
    decord imports for the same reason). Measured here: decord imported first, then a model's
    ONNX export and its check against PyTorch segfaulted in a convolution (rc 139); with torch
    first, it runs. Raises ImportError when decord is not installed.
    """
    import importlib

    importlib.import_module("torch")  # loaded before decord (see above)
    return importlib.import_module("decord")


class DecordSource(VideoSource):
    """decord backend; every decord error, and every file it would misread, is a VideoDecodeError."""

    backend = "decord"

    def __init__(self, path: str | os.PathLike[str], *, short_side: int | None = None) -> None:
        check_short_side(short_side)
        self.path = Path(path)
        check_path(self.path)
        self._decord = import_decord()
        try:
            self._probe: probing.StreamProbe | None = probing.probe(self.path)
        except VideoDecodeError as exc:  # PyAV cannot read it: decord is on its own
            log.info("%s: %s; decord reads it without a probe", self.path, exc.reason)
            self._probe = None
        self._refuse_what_decord_misreads()
        self._short_side = short_side
        self._fd: int | None = None
        self._reader: Any = None
        self._uri = self._decord_uri()
        try:
            self._open_reader()
        except BaseException:
            self.close()
            raise

    def _open_reader(self) -> None:
        self._reader = self._guarded(self._new_reader, "decord cannot open it")
        stamps = self._guarded(self._frame_times, "decord cannot index it")
        # decord mis-seeks in files whose frames carry no timestamps (H.264 in AVI): it
        # silently returns frames of the wrong GOP, so such files are read in order instead.
        self.reads_in_order = stamps is None
        fps = float(self._reader.get_avg_fps()) or probing.FALLBACK_FPS
        self.timeline = self._agreed_timeline(stamps, fps)
        width, height = self._stored_size()
        sar = self._probe.sar if self._probe else None
        self.info = VideoInfo(self.timeline.num_frames, self._probe.fps if self._probe else fps,
                              self.timeline.duration_s,
                              *output_size(width, height, sar, IDENTITY, self._short_side),
                              stream=self._probe.stream_index if self._probe else 0,
                              codec=self._probe.codec if self._probe else "")

    def _refuse_what_decord_misreads(self) -> None:
        p = self._probe
        if p is None:
            return
        reason = None
        if not probing.first_frame_orientation(self.path, p.stream_index).is_identity:
            # decord 3.4 turns rotated frames but then scales them back to the stored shape,
            # and ignores mirrors.
            reason = "decord cannot show a rotated or mirrored video upright"
        elif p.container == "mpegts":
            # Seeks in MPEG-TS with 8 s keyframe intervals hang or fail after seconds
            # ("Unable to handle EOF").
            reason = "decord cannot seek reliably in MPEG-TS"
        elif p.open_gop:
            reason = "decord returns wrong frames from open-GOP HEVC (CRA keyframes)"
        elif not p.timeline.trusted_pts:
            reason = "decord cannot follow timestamps that restart part-way or run out of order"
        if reason:
            raise VideoDecodeError(self.path, f"{reason}; use --video-backend pyav or auto")

    def _guarded(self, call: Callable[[], Any], what: str) -> Any:
        """Run a decord call, turning whatever it raises into a one-line VideoDecodeError."""
        try:
            with native_stderr_silenced():
                return call()
        except VideoDecodeError:
            raise
        except Exception as exc:  # noqa: BLE001 - decord raises assorted types
            raise VideoDecodeError(self.path, f"{what} ({one_line(exc, self.path)})") from exc

    def _decord_uri(self) -> str:
        """A name decord can take: it encodes names as UTF-8, so a name that is not (Latin-1
        bytes from an old archive) is opened here and passed as /proc/self/fd/N."""
        name = str(self.path)
        try:
            name.encode("utf-8")
            return name
        except UnicodeEncodeError:
            if not os.path.isdir("/proc/self/fd"):
                raise VideoDecodeError(self.path, "decord cannot open a file whose name is not "
                                                  "UTF-8; use --video-backend pyav or auto") from None
        self._fd = os.open(self.path, os.O_RDONLY)
        return f"/proc/self/fd/{self._fd}"

    def _new_reader(self) -> Any:
        # decord can scale in the decoder (width=, height=): its pixels differ from the
        # model's resize, and it measured no faster than resizing the decoded frames.
        return self._decord.VideoReader(self._uri, ctx=self._decord.cpu(0),
                                        num_threads=decoder_threads())

    def _frame_times(self) -> np.ndarray | None:
        """decord's start time of each of its frames (seconds), or None without timestamps."""
        stamps = self._reader.get_frame_timestamp(range(len(self._reader)))
        if not (np.isfinite(stamps).all() and stamps.min() > -1e6):
            return None
        return np.asarray(stamps[:, 0], dtype=np.float64)

    def _agreed_timeline(self, stamps: np.ndarray | None, fps: float) -> Timeline:
        """The probe's timeline when decord numbers the same frames at the same times; without
        a probe, decord's own. Any disagreement (an edit list decord ignores, another stream,
        a lying header) is refused: decord would return other frames than a player shows."""
        count = len(self._reader)
        if self._probe is None:
            if stamps is None or count < 1:
                return counted_timeline(max(count, 1), fps)
            starts = stamps - stamps[0]
            steps = np.diff(starts)
            step = float(np.median(steps)) if steps.size and np.median(steps) > 0 else 1 / fps
            return Timeline(starts, float(starts[-1] + step), None, np.zeros(1, dtype=np.int64),
                            trusted_pts=False)
        timeline = self._probe.timeline
        agrees = count == timeline.num_frames
        if agrees and stamps is not None and count > 1:
            step = timeline.duration_s / timeline.num_frames
            agrees = bool(np.abs((stamps - stamps[0]) - timeline.starts_s).max() < step / 2)
        if not agrees:
            raise VideoDecodeError(self.path, f"decord's frame index ({count} frames) disagrees "
                                              f"with the file's timestamps ({timeline.num_frames} "
                                              "frames shown); use --video-backend pyav or auto")
        return timeline

    def _stored_size(self) -> tuple[int, int]:
        if self._probe is not None and self._probe.width > 0 and self._probe.height > 0:
            return self._probe.width, self._probe.height
        height, width = self._batch([0]).shape[1:3]
        return width, height

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
                with native_stderr_silenced():
                    last = reader.next()
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001 - decord raises assorted types
                if last is None:
                    reason = f"decord failed to decode ({one_line(exc, self.path)})"
                    raise VideoDecodeError(self.path, reason) from exc
                log.info("%s: decoding stopped part-way (%s)", self.path, one_line(exc))
                break
            if pos in wanted:
                got[pos] = self._to_numpy(last)
        if last is None:
            raise VideoDecodeError(self.path, "no frame could be decoded")
        end = self._to_numpy(last)
        return np.stack([got.get(i, end) for i in indices])

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        wanted = as_indices(indices)
        if self._reader is None:
            raise ValueError(f"{self.path}: video is closed")
        if wanted.size == 0:
            return empty_frames(self.info)
        clamped = np.minimum(wanted, self.info.num_frames - 1).tolist()
        frames = self._read_in_order(clamped) if self.reads_in_order else self._batch(clamped)
        sar = self._probe.sar if self._probe else None
        if self._short_side is None and not sar:
            return frames
        return np.stack([to_display(frame, sar, IDENTITY, self._short_side) for frame in frames])

    def close(self) -> None:
        self._reader = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
