"""From a file (or an array) to the views a model scores.

A *view* is one clip of T uint8 frames: a (T, 3, S, S) torch tensor for PyTorch, or a
(T, S, S, 3) NumPy array for ONNX Runtime (made without importing torch). A file gives
``clips x crops`` views whose probabilities are averaged into the file-level prediction
(multi-clip, multi-crop testing as in TSN), followed by one view per sliding window when
windows are asked for. All of a file's frames are decoded in one pass.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from xmodal.errors import ConfigError, InputError, VideoDecodeError, missing_reason

DEFAULT_FRAMES = 8  # T of a model whose metadata does not say (encoder names: ImageNet classes)

if TYPE_CHECKING:
    import torch

ArrayKind = Literal["torch", "numpy"]


def media_kind(path: Path) -> str | None:
    """``"video"``, ``"image"`` or None, by extension."""
    from xmodal.data.image import IMAGE_EXTENSIONS
    from xmodal.data.video import VIDEO_EXTENSIONS

    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    return None


def unsupported_reason(path: Path) -> str:
    """Why a file is not read: its type (extension) is neither a video nor an image one."""
    return f"unsupported file type {path.suffix or '(no extension)'!r}"


@dataclass
class Scan:
    """What a folder scan found: the files to use, and those passed over for their type."""

    files: list[Path]
    unsupported: list[Path]


def scan_paths(paths: Iterable[str | os.PathLike[str]], *, globs: tuple[str, ...] = (),
               keep_empty: bool = False) -> Scan:
    """Files as given; folders recursed in sorted order, each real folder visited once.

    ``globs`` (e.g. ``("*.mp4",)``) replaces the extension test for files found in folders
    (the files it leaves out were not asked for, so they are not ``unsupported``); files named
    explicitly are always kept and reported if bad. Hidden files and folders (".name") are
    passed over silently. A folder with no media is kept itself (to be reported) when named
    like a video, or always with ``keep_empty``.
    """
    out: list[Path] = []
    unsupported: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = _walk(path, globs, unsupported)
            # "clip.mp4/" holding no media was meant as a file: keep it so it is reported.
            out.extend(found if found or (media_kind(path) is None and not keep_empty) else [path])
        else:
            out.append(path)
    return Scan(out, unsupported)


def _walk(root: Path, globs: tuple[str, ...], unsupported: list[Path]) -> list[Path]:
    import fnmatch

    found: list[Path] = []
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # a symlink loop, or a second link to a visited folder
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            file = Path(dirpath) / name
            if globs:
                if any(fnmatch.fnmatch(name, g) for g in globs):
                    found.append(file)
            elif media_kind(file) is not None:
                found.append(file)
            else:
                unsupported.append(file)
    return found


@dataclass
class ClipReader:
    """Decodes one input into its views; picklable so worker processes can run it.

    ``arrays="torch"``: views stacked as an (N, T, 3, S, S) uint8 tensor, resized with torch
    (the PyTorch engine). ``"numpy"``: an (N, T, S, S, 3) uint8 array, resized with Pillow
    (``xmodal.data.resize``; the ONNX Runtime engine), and torch is never imported.
    ``still_scale`` < 1: an image file or a single-frame array is zoomed out to that fraction
    of the frame's sides first (``xmodal.data.resize.zoom_out``), as a model trained on clips
    alone expects (``TrainConfig.still_scale_for_prediction``); ``from_meta`` reads it from a
    model's preprocessing.
    """

    frames: int
    input_size: int
    resize_size: int
    backend: str = "auto"
    clips: int = 1
    crops: int = 1
    window_s: float | None = None
    stride_s: float | None = None
    segments: str | None = None  # "shots": one view per shot (xmodal.data.shots) instead of windows
    shot_detector: str = "content"
    arrays: ArrayKind = "torch"
    still_scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.still_scale <= 1:
            raise ConfigError(f"still_scale must be in (0, 1] (1: stills as they come), "
                              f"got {self.still_scale}")

    @classmethod
    def from_meta(cls, meta: dict[str, Any], backend: str = "auto", **options: Any) -> ClipReader:
        """The reader for a model's metadata (``model.json``): its frames and preprocessing
        (input and resize size, still scale; a model saved before ``still_scale`` existed shows
        stills as they come)."""
        pre = meta["preprocessing"]
        options.setdefault("still_scale", float(pre.get("still_scale", 1.0)))
        return cls(int(meta.get("frames", DEFAULT_FRAMES)), int(pre["input_size"]),
                   int(pre["resize_size"]), backend, **options)

    def __call__(self, item: Any) -> tuple[torch.Tensor | np.ndarray, dict[str, Any]]:
        if isinstance(item, (str, os.PathLike)):
            groups, info = self._decode_file(Path(item))
        else:
            groups, info = [_array_input(item)], {"kind": "array", "frames": None,
                                                  "duration_s": None}
        if self.still_scale < 1 and info["kind"] != "video" and len(groups[0]) == 1:
            groups = [self._zoomed_out(groups[0][0])[None]]
        averaged = [v for g in groups[:self._n_average(info)] for v in self._views(g)]
        windows = [self._views(g)[0] for g in groups[self._n_average(info):]]
        info["n_avg"] = len(averaged)
        if self.arrays == "numpy":
            return np.stack(averaged + windows), info
        import torch

        return torch.stack(averaged + windows), info

    def _zoomed_out(self, frame: np.ndarray) -> np.ndarray:
        """A still (H, W, 3) at ``still_scale`` of a new frame's sides (``zoom_out``), shrunk
        first to the size it takes in the view, so that the canvas of a large photo stays near
        the view's size (a 12 MP photo at 0.1 would need a 14 GB canvas otherwise)."""
        from xmodal.data.resize import resize_shorter_side, zoom_out

        short = math.ceil(self._short_side * self.still_scale)
        if min(frame.shape[:2]) > short:
            frame = resize_shorter_side(frame, short)
        return zoom_out(frame, self.still_scale)

    def _n_average(self, info: dict[str, Any]) -> int:
        return self.clips if info["kind"] == "video" else 1

    @property
    def _short_side(self) -> int:
        """The shorter side views are cut from: centre crop of resize_size, or 3 crops of input_size."""
        return self.resize_size if self.crops == 1 else self.input_size

    def _views(self, frames: np.ndarray) -> list[Any]:
        """Resize the shorter side, then 1 centre crop or 3 crops along the longer side."""
        if self.arrays == "numpy":
            return self._numpy_views(frames)
        from xmodal.data.transforms import center_crop, resize_shorter_side

        clip = _clip_tensor(frames)
        clip = resize_shorter_side(clip, self._short_side)  # no-op if shrunk while decoding
        if self.crops == 1:
            return [center_crop(clip, self.input_size)]
        return [clip[..., top:top + s, left:left + s]
                for left, top, s in _three_crops(*clip.shape[-2:], self.input_size)]

    def _numpy_views(self, frames: np.ndarray) -> list[np.ndarray]:
        """As ``_views``, in (T, S, S, 3) NumPy arrays resized by Pillow (torch-free)."""
        from xmodal.data.resize import center_crop, resize_shorter_side

        clip = np.stack([resize_shorter_side(f, self._short_side) for f in frames])
        if self.crops == 1:
            return [np.ascontiguousarray(center_crop(clip, self.input_size))]
        return [np.ascontiguousarray(clip[:, top:top + s, left:left + s])
                for left, top, s in _three_crops(*clip.shape[1:3], self.input_size)]

    def _decode_file(self, path: Path) -> tuple[list[np.ndarray], dict[str, Any]]:
        from xmodal.data.image import load_image

        kind = media_kind(path)
        if not path.exists():
            raise InputError(path, missing_reason(path))
        if path.is_dir():
            raise InputError(path, "is a directory, not a media file" if kind is not None
                             else "folder holds no video or image files")
        if kind is None:
            raise InputError(path, unsupported_reason(path))
        if kind == "image":
            return [load_image(path)[None]], {"kind": "image", "frames": 1, "duration_s": None}
        return self._decode_video(path)

    def _decode_video(self, path: Path) -> tuple[list[np.ndarray], dict[str, Any]]:
        """Frames of every view, sampled by time: samplers pick slots of the span a player shows
        (``Timeline``), each read as the frame on screen at the slot's centre."""
        from xmodal.data.sampling import multi_clip_indices, window_bounds
        from xmodal.data.video import open_video

        # The decoder's shrink-while-decoding resizes with torch; the NumPy path resizes after.
        short_side = self._short_side if self.arrays == "torch" else None
        with open_video(path, self.backend, short_side=short_side) as source:
            n, span = source.info.num_frames, source.info.duration_s
            if n < 1:
                raise VideoDecodeError(path, "the video has no frames")
            slots = [multi_clip_indices(n, self.frames, k, self.clips) for k in range(self.clips)]
            windows: list[tuple[int, int]] = []
            if self.segments == "shots":
                windows = self._shot_slots(path, source.timeline)
            elif self.window_s:
                windows = window_bounds(n, n / span, self.window_s, self.stride_s or self.window_s)
            slots += [a + multi_clip_indices(b - a, self.frames, 0, 1) for a, b in windows]
            timeline = source.timeline
            wanted = [timeline.frames_for_slots(s) for s in slots]
            unique = np.unique(np.concatenate(wanted))
            decoded = source.get_frames(unique.tolist())
            meta = source.info  # after decoding: a stream that broke part-way is shorter
        if short_side is None and self.arrays == "numpy":
            from xmodal.data.resize import resize_shorter_side

            # Each decoded frame once, before windows and clips share them out.
            decoded = np.stack([resize_shorter_side(f, self._short_side) for f in decoded])
        lookup = {int(i): k for k, i in enumerate(unique)}
        groups = [decoded[[lookup[int(i)] for i in idx]] for idx in wanted]
        times = [_seconds(timeline.starts_s[np.minimum(idx, meta.num_frames - 1)]) for idx in wanted]
        info: dict[str, Any] = {"kind": "video", "frames": meta.num_frames,
                                "duration_s": round(meta.duration_s, 3),
                                "sampled_s": sorted(set().union(*times[:self.clips]))}
        if windows:
            seconds = span / n
            info["windows"] = [(round(a * seconds, 3), round(b * seconds, 3)) for a, b in windows]
            info["window_sampled_s"] = times[self.clips:]
        return groups, info

    def _shot_slots(self, path: Path, timeline: Any) -> list[tuple[int, int]]:
        """``[start, end)`` slot ranges of the shots: each shot's first frame, by the time it is
        shown, starts a range of the slots (equal cells of the span) that TSN samples from."""
        from xmodal.data.shots import detect_shot_starts, shot_ranges

        starts, _ = detect_shot_starts(path, backend=self.backend, detector=self.shot_detector)
        n = timeline.num_frames
        cell = timeline.duration_s / n
        slots = [int(round(timeline.starts_s[min(s, n - 1)] / cell)) for s in starts]
        return shot_ranges(slots, n)


def _seconds(times: np.ndarray) -> list[float]:
    return [round(float(t), 3) for t in times]


def _three_crops(h: int, w: int, s: int) -> list[tuple[int, int, int]]:
    """(left, top, size) of three ``s`` crops along the longer side: start, centre, end."""
    if w >= h:
        return [(0, (h - s) // 2, s), ((w - s) // 2, (h - s) // 2, s), (w - s, (h - s) // 2, s)]
    return [((w - s) // 2, 0, s), ((w - s) // 2, (h - s) // 2, s), ((w - s) // 2, h - s, s)]


def _clip_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) frames as a (T, 3, H, W) tensor, sharing their memory in whatever layout.

    Frames resized while decoding lie channels-first in memory; a copy into (T, H, W, 3)
    order would transpose them for nothing (measured: 4% of a 640x360 clip's CPU time).
    Read-only frames and negative strides (a user's BGR-to-RGB view) are copied: torch needs that.
    """
    import torch

    if not frames.flags.writeable or min(frames.strides, default=0) < 0:
        frames = frames.copy()
    return torch.from_numpy(frames).permute(0, 3, 1, 2)


def _array_input(item: Any) -> np.ndarray:
    """PIL images and uint8 RGB arrays (H, W, 3) or (T, H, W, 3) become (T, H, W, 3)."""
    if hasattr(item, "convert") and hasattr(item, "size"):  # PIL.Image
        item = np.asarray(item.convert("RGB"))
    array = np.asarray(item)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise InputError("<array>", f"expected (H, W, 3) or (T, H, W, 3) RGB, got {array.shape}")
    if array.dtype != np.uint8:
        raise InputError("<array>", f"expected uint8 pixels, got {array.dtype}")
    return array
