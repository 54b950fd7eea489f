"""Real files for ``tools/bench_accuracy.py``: every still and clip written once, splits as folders.

``MediaStore`` writes each image of a dataset that some split needs as a PNG still and/or an
MP4 clip (``_bench_clips``), under a folder keyed by the dataset's content hash and the clip
generator's version and frame size. A split is then a class-per-folder tree of hard links
into the store (a copy where links fail): exactly what a user's dataset folder looks like,
so xmodal's own scanner, decoders and CLI read it as they would read theirs.
"""

from __future__ import annotations

import os
import shutil
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import _bench_clips as clips
import numpy as np
from _bench_datasets import BenchDataset
from _bench_recipes import Item


class MediaStore:
    """Stills and clips of one dataset, by image index: ``root/{stills,clips}/<class>/<index>``."""

    def __init__(self, cache: Path, dataset: BenchDataset) -> None:
        self.dataset = dataset
        self.key = f"{dataset.name}-{dataset.version}-g{clips.GENERATOR_VERSION}-s{clips.SHORT_SIDE}"
        self.root = cache / "media" / self.key

    def still(self, index: int) -> Path:
        return self.root / "stills" / self._class(index) / f"{index:05d}.png"

    def clip(self, index: int) -> Path:
        return self.root / "clips" / self._class(index) / f"{index:05d}.mp4"

    def _class(self, index: int) -> str:
        return self.dataset.classes[int(self.dataset.labels[index])]

    def clip_seed(self, index: int) -> int:
        """A clip's seed depends on its dataset and image only, so it is the same in every split."""
        return zlib.crc32(f"{self.dataset.name}/{index}".encode())

    def item(self, index: int, kind: str) -> Item:
        path = self.still(index) if kind == "still" else self.clip(index)
        return Item(path, int(self.dataset.labels[index]), kind, f"{kind}/{index:05d}")

    def missing(self, stills: Iterable[int], clip_indices: Iterable[int]) -> tuple[list[int], list[int]]:
        """Indices whose still / clip file is not written yet."""
        return ([i for i in sorted(set(stills)) if not self.still(i).is_file()],
                [i for i in sorted(set(clip_indices)) if not self.clip(i).is_file()])

    def ensure(self, stills: Iterable[int], clip_indices: Iterable[int], workers: int = 1) -> int:
        """Write the missing files (clips in ``workers`` processes); returns how many were written."""
        todo_stills, todo_clips = self.missing(stills, clip_indices)
        for index in todo_stills:
            _write_still(self.dataset.images[index], self.still(index))
        jobs = [(self.dataset.images[i], self.dataset.matte, self.clip(i), self.clip_seed(i))
                for i in todo_clips]
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(workers, initializer=_quiet_worker) as pool:
                list(pool.map(_write_clip, jobs, chunksize=8))
        else:
            for job in jobs:
                _write_clip(job)
        return len(todo_stills) + len(todo_clips)


def _quiet_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already


def _write_clip(job: tuple[np.ndarray, str, Path, int]) -> None:
    image, matte, path, seed = job
    clips.make_clip(image, matte, path, seed)


def _write_still(image: np.ndarray, path: Path) -> None:
    """A lossless PNG of the image as it ships (grey stays grey), written then renamed."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    Image.fromarray(image).save(tmp)
    tmp.replace(path)


def link_split(folder: Path, items: Sequence[Item], classes: Sequence[str] | None) -> list[Item]:
    """A fresh ``folder/<class>/<file>`` tree of hard links to the items' files; the items, relocated.

    ``classes`` None: one flat folder with no class names (an unlabelled set)."""
    if folder.exists():
        shutil.rmtree(folder)
    out = []
    for item in items:
        name = f"{item.kind}_{item.path.name}"
        target = folder / name if classes is None else folder / classes[item.label] / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(item.path, target)
        except OSError:  # another filesystem, or links not allowed
            shutil.copyfile(item.path, target)
        out.append(Item(target, item.label, item.kind, item.key))
    return out
