"""Small JPEG strips of the frames the model saw, one per file, made in isolated workers.

A strip holds a file's frames side by side, each ``height`` pixels high, at the presentation
times the record gives (``sampled_s``): the frames the model was shown, decoded again with
the same timeline. Files are decoded in ``DecodePool`` workers with a timeout, so a file that
hangs or crashes a decoder costs its own thumbnail only. A strip is named by the file's path,
size, modification time and the times asked, so a second report reuses it and a file listed
many times is decoded once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.errors import InputError, missing_reason

HEIGHT = 96
MAX_FRAME_WIDTH = 192  # panoramas and very wide videos are cropped to this, centred
QUALITY = 80
ROUNDING_S = 0.0005  # records give times rounded to 3 decimals


@dataclass(frozen=True)
class ThumbnailRequest:
    path: str
    kind: str  # "video" or "image"
    times_s: tuple[float, ...]
    name: str  # file name of the strip under the thumbnails folder


def request_for(record: dict[str, Any], height: int = HEIGHT) -> ThumbnailRequest:
    """What to decode for a record; raises InputError when its file is gone."""
    path = record["path"]
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise InputError(path, missing_reason(Path(path))) from None
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None
    kind = "image" if record.get("kind") == "image" else "video"
    times = tuple(float(t) for t in record.get("sampled_s") or ()) if kind == "video" else ()
    key = b"\0".join([os.fsencode(os.path.abspath(path)), str(stat.st_size).encode(),
                      str(stat.st_mtime_ns).encode(), repr(times).encode(), str(height).encode()])
    return ThumbnailRequest(path, kind, times, hashlib.sha1(key).hexdigest()[:20] + ".jpg")


class StripMaker:
    """Decodes a request's frames and writes its strip; picklable for worker processes."""

    def __init__(self, folder: str | os.PathLike[str], height: int = HEIGHT,
                 fallback_frames: int = 8) -> None:
        self.folder = Path(folder)
        self.height = height
        self.fallback_frames = fallback_frames

    def __call__(self, request: ThumbnailRequest) -> str:
        """Writes the strip; returns its file name."""
        _save_jpeg(_strip(self._frames(request), self.height), self.folder / request.name)
        return request.name

    def _frames(self, request: ThumbnailRequest) -> list[np.ndarray]:
        if request.kind == "image":
            from xmodal.data.image import load_image

            return [load_image(request.path)]
        from xmodal.data.sampling import TSNSampler
        from xmodal.data.video import open_video, read_clip

        if not request.times_s:  # a record written before sampled_s: the frames inference samples
            return list(read_clip(request.path, TSNSampler(self.fallback_frames, train=False),
                                  short_side=self.height).frames)
        # Records round times to the millisecond: a frame starting at 0.30000001 s is recorded
        # as 0.3, where the frame before is still on screen. Half a millisecond later is inside
        # the recorded frame for any rate below 1000 fps.
        times = [t + ROUNDING_S for t in request.times_s]
        with open_video(request.path, short_side=self.height) as source:
            return list(source.read_times(times).frames)


def _strip(frames: Sequence[np.ndarray], height: int) -> np.ndarray:
    """Frames scaled to ``height`` (aspect kept, cropped to MAX_FRAME_WIDTH), side by side."""
    from PIL import Image

    h, w = frames[0].shape[:2]
    width = max(1, round(w * height / h))
    cells = []
    for frame in frames:
        image = Image.fromarray(np.ascontiguousarray(frame)).resize((width, height), Image.BILINEAR)
        cells.append(np.asarray(image))
    if width > MAX_FRAME_WIDTH:
        left = (width - MAX_FRAME_WIDTH) // 2
        cells = [c[:, left:left + MAX_FRAME_WIDTH] for c in cells]
    return np.concatenate(cells, axis=1)


def _save_jpeg(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(array).save(tmp, format="JPEG", quality=QUALITY)
    os.replace(tmp, path)


def make_strips(requests: Sequence[ThumbnailRequest], folder: Path, *, workers: int = 2,
                timeout_s: float = 60.0, height: int = HEIGHT,
                reporter: Any = None) -> Iterator[tuple[str, str | None]]:
    """``(name, error)`` for each distinct strip not made yet (error None when it was written)."""
    from xmodal.engine.predict import describe_failure
    from xmodal.engine.reporting import Reporter
    from xmodal.engine.workers import DecodePool

    folder.mkdir(parents=True, exist_ok=True)
    todo = list({r.name: r for r in requests if not (folder / r.name).exists()}.values())
    pool = DecodePool(StripMaker(folder, height), workers=workers if len(todo) > 2 else 0,
                      timeout_s=timeout_s, describe_error=describe_failure)
    for index, _, error in (reporter or Reporter()).track(pool.imap(todo), total=len(todo),
                                                          desc="thumbnails"):
        yield todo[index].name, error

