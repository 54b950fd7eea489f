"""Decode each training video once per run: a grid of its frames, kept on disk as uint8.

Without it every epoch decodes every training clip again, and a long or high-resolution
video costs far more to decode than to train on (a 10 s 1080p H.264 clip: about 0.7 s of one
core for 3 frames, against about 0.35 s for the 3 frames' forward and backward pass at
224 px). The first time a clip is drawn, its frames are decoded, shrunk while decoding to the
preprocessing's short side, and stored; later epochs draw their TSN segments from them. This
is MMAction2's "rawframes" practice (frames extracted once, then sampled), done lazily and per
run.

Every frame is stored while the clip fits in ``max_bytes`` (16 MiB: 120 frames at 128 x 171,
45 at 256 x 455), so training draws exactly the frames and pixels it would without the cache;
a longer clip keeps as many evenly spaced frames as fit (at least 16), and its segments draw
from those. Only for clips whose training transform starts with the evaluation resize (the
``cross`` and ``none`` presets), so the pixels are the ones decoding gives. Nothing is stored
when the disk would keep less than 2 GiB free: the run then decodes as if uncached.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from xmodal.data.sampling import FrameSampler, uniform_indices

# A 16-frame grid instead of every frame measured 4 points lower on clips (tools/bench_accuracy.py,
# digits clips of 10-120 frames, 2 seeds), so every frame is kept up to this size.
DEFAULT_MAX_BYTES = 16 * 2**20
MIN_SLOTS = 16  # frames kept of a clip however large its frames
DISK_RESERVE = 2 * 2**30  # bytes left free on the cache's disk
# Bump when what an entry holds changes meaning.
FORMAT = 2


class FrameCache:
    """Frames of training videos decoded once, under ``root`` (a folder the caller owns).

    Picklable (a path and three settings), so DataLoader workers share it through the disk;
    two workers decoding the same clip at once both write whole files, and the last rename wins.
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
        """Where the frames of ``path`` go: keyed by its path, size and modification time, the
        short side, the decoder and the size budget."""
        stat = os.stat(path)
        identity = (f"{FORMAT}|{os.fsencode(Path(path).resolve())!r}|{stat.st_size}|"
                    f"{stat.st_mtime_ns}|{self.short_side}|{self.backend}|{self.max_bytes}")
        return self.root / f"{hashlib.sha256(identity.encode()).hexdigest()}.npy"

    def grid(self, path: str | os.PathLike[str]) -> np.ndarray:
        """The stored frames of ``path``, (S, H, W, 3) uint8: every frame, or S evenly spaced
        ones for a clip larger than ``max_bytes`` (read-only, memory-mapped), decoded and stored
        first if missing. Raises what decoding raises (xmodal.data.video's VideoDecodeError for
        a file that cannot be read)."""
        return self._grid(self.entry(path), path)

    def _grid(self, entry: Path, path: str | os.PathLike[str]) -> np.ndarray:
        if entry.is_file():
            return np.load(entry, mmap_mode="r")
        frames = self._decode(path)
        self._store(entry, frames)
        return frames

    def frames(self, path: str | os.PathLike[str], sampler: FrameSampler,
               rng: np.random.Generator | None = None) -> np.ndarray:
        """``sampler``'s frames drawn from the grid of ``path``: (T, H, W, 3) uint8. With no
        room left on the disk, or a path that cannot even be looked up (missing, a symlink
        loop), the frames are read from the file as without a cache, so a bad file raises the
        decoder's own error (VideoDecodeError, naming the reason) and is skipped as before."""
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

    def _room(self) -> bool:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            return shutil.disk_usage(self.root).free >= DISK_RESERVE + self.max_bytes
        except OSError:
            return False

    def _decode(self, path: str | os.PathLike[str]) -> np.ndarray:
        from xmodal.data.video import open_video

        with open_video(path, self.backend, short_side=self.short_side) as source:
            info = source.info
            fits = self.max_bytes // (info.width * info.height * 3)
            slots = min(info.num_frames, max(MIN_SLOTS, fits))
            return source.read_slots(uniform_indices(info.num_frames, slots)).frames

    def _store(self, entry: Path, frames: np.ndarray) -> None:
        # A full disk or a read-only folder costs the cache, not the run: the frames are returned.
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=entry.parent, suffix=".part")
        except OSError:
            return
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, frames)
            os.replace(tmp, entry)
        except OSError:
            Path(tmp).unlink(missing_ok=True)
