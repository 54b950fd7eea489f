"""Decode each training video once per run: its frames, kept on disk as uint8.

Without it every epoch decodes every training clip again, and a long or high-resolution video
costs more to decode than to train on (a 10 s 1080p H.264 clip: about 0.7 s of one core for 3
frames, against about 0.35 s for their forward and backward pass at 224 px). The first time a
clip is drawn its frames are decoded, shrunk while decoding to the preprocessing's short side,
and stored; later epochs draw their TSN segments from them (MMAction2's "rawframes", made
lazily and per run). A clip keeps every frame while they fit in ``max_bytes``, so its draws are
the same as without the cache; a larger clip keeps as many evenly spaced frames as fit.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from xmodal.data.sampling import FrameSampler, uniform_indices

# 16 MiB: 255 frames at 128 x 171 px, 192 at 128 x 227 (16:9 at the 112 px preprocessing), 48 at
# 256 x 455 (16:9 at 224 px). A 16-frame grid of every clip measured 4 points lower on clips and
# 11 on stills (tools/bench_accuracy.py, digits clips of 10-120 frames, 2 seeds).
DEFAULT_MAX_BYTES = 16 * 2**20
MIN_SLOTS = 16  # frames kept of a clip however large its frames
DISK_RESERVE = 2 * 2**30  # bytes the cache leaves free on its disk


class FrameCache:
    """Frames of training videos decoded once, in ``root``: a folder the caller creates and
    removes (the cache never creates it; without it, frames are decoded as if uncached).

    Picklable, so DataLoader workers share it through the disk; two workers storing the same
    clip at once each write a whole file and the last rename wins.
    """

    def __init__(self, root: str | os.PathLike[str], *, short_side: int, backend: str = "auto",
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.root = Path(root)
        self.short_side = short_side
        self.backend = backend
        self.max_bytes = max_bytes

    def entry(self, path: str | os.PathLike[str]) -> Path:
        """Where the frames of ``path`` go, keyed by its path, size and modification time."""
        stat = os.stat(path)
        identity = f"{os.fsencode(Path(path).resolve())!r}|{stat.st_size}|{stat.st_mtime_ns}"
        return self.root / f"{hashlib.sha256(identity.encode()).hexdigest()}.npy"

    def grid(self, path: str | os.PathLike[str]) -> np.ndarray:
        """The kept frames of ``path``, (S, H, W, 3) uint8, decoded and stored first if missing.
        Raises what decoding raises (VideoDecodeError for a file that cannot be read)."""
        return self._grid(self.entry(path), path)

    def frames(self, path: str | os.PathLike[str], sampler: FrameSampler,
               rng: np.random.Generator | None = None) -> np.ndarray:
        """``sampler``'s frames drawn from the kept frames of ``path``: (T, H, W, 3) uint8.

        Read from the file as without a cache when the root is gone, the disk is nearly full,
        or the path cannot be looked up (so a bad file raises the decoder's named error)."""
        try:
            entry: Path | None = self.entry(path)
        except OSError:
            entry = None
        if entry is None or (not entry.is_file() and not self._room()):
            from xmodal.data.video import read_clip

            return read_clip(path, sampler, backend=self.backend, rng=rng,
                             short_side=self.short_side).frames
        grid = self._grid(entry, path)
        return np.ascontiguousarray(grid[sampler(len(grid), rng=rng)])

    def _grid(self, entry: Path, path: str | os.PathLike[str]) -> np.ndarray:
        if entry.is_file():
            return np.load(entry, mmap_mode="r")
        frames = self._decode(path)
        self._store(entry, frames)
        return frames

    def _room(self) -> bool:
        try:
            return shutil.disk_usage(self.root).free >= DISK_RESERVE + self.max_bytes
        except OSError:  # the root is gone (the run is ending) or unreadable
            return False

    def _decode(self, path: str | os.PathLike[str]) -> np.ndarray:
        from xmodal.data.video import open_video

        with open_video(path, self.backend, short_side=self.short_side) as source:
            info = source.info
            frame_bytes = info.width * info.height * 3  # 0 when the header gives no size
            fits = self.max_bytes // frame_bytes if frame_bytes else MIN_SLOTS
            slots = min(info.num_frames, max(MIN_SLOTS, fits))
            return source.read_slots(uniform_indices(info.num_frames, slots)).frames

    def _store(self, entry: Path, frames: np.ndarray) -> None:
        # A full disk or a removed folder costs the cache, not the run: the frames are returned.
        try:
            fd, tmp = tempfile.mkstemp(dir=entry.parent, suffix=".part")
        except OSError:
            return
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, frames)
            os.replace(tmp, entry)
        except OSError:
            Path(tmp).unlink(missing_ok=True)
