"""Datasets of images, videos or both, found in class folders or listed in a CSV.

A still image is a clip with T=1, so one dataset serves both kinds; batches
must not mix kinds (T differs), which is what KindBatchSampler guarantees.
Files are only decoded in ``__getitem__``, i.e. inside DataLoader workers. Finding and
splitting the files is torch-free, in ``xmodal.data.samples`` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from xmodal.data.image import load_image
from xmodal.data.samples import (  # noqa: F401 - re-exported: datasets is where callers look
    Kind,
    Sample,
    kind_of,
    read_csv,
    scan_folder,
    stratified_split,
)
from xmodal.data.sampling import make_sampler
from xmodal.data.transforms import to_clip_tensor
from xmodal.data.video import read_clip

if TYPE_CHECKING:
    from xmodal.data.frame_cache import FrameCache


class ClipDataset(Dataset):
    """``(clip, label)`` items: clip is uint8 (T, 3, H, W), T=1 for images and ``num_frames`` for videos.

    No decoder is opened here: each item opens and closes its own file, so the dataset pickles
    cheaply into DataLoader workers and never shares a decoder between processes. With a
    ``frame_cache`` (training only), videos are drawn from the frames it decoded once instead.
    """

    def __init__(self, samples: Sequence[Sample], num_frames: int,
                 transform: Callable[[Tensor], Tensor] | None, *, train: bool, backend: str = "auto",
                 sampler: str = "tsn", short_side: int | None = None,
                 frame_cache: FrameCache | None = None) -> None:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.samples = list(samples)
        self.num_frames = num_frames
        self.transform = transform
        self.train = train
        self.backend = backend
        self.short_side = short_side
        self.sampler = make_sampler(sampler, num_frames, train)
        self.frame_cache = frame_cache

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def kinds(self) -> list[Kind]:
        """Per-sample kind, in index order: what KindBatchSampler needs."""
        return [s.kind for s in self.samples]

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, int]:
        """``key``: an index, or ``(index, seed)`` (``SeededBatchSampler``), which draws the
        item's random frames and augmentation from torch's RNG seeded with ``seed`` (the
        caller's RNG state is restored afterwards)."""
        if not isinstance(key, tuple):
            return self._item(key)
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # the CPU's alone: a GPU's dropout stream stays
            return self._item(index)

    def _item(self, index: int) -> tuple[Tensor, int]:
        sample = self.samples[index]
        clip = to_clip_tensor(self._frames(sample))
        if self.transform is not None:
            clip = self.transform(clip)
        return clip, sample.label

    def _frames(self, sample: Sample) -> np.ndarray:
        if sample.kind == "image":
            return load_image(sample.path)[None]
        # Drawn from torch's RNG: seeded per item in training (SeededBatchSampler), so frame
        # choices are reproducible yet differ from epoch to epoch.
        rng = np.random.default_rng(int(torch.randint(2**62, (1,)).item())) if self.train else None
        if self.frame_cache is not None:
            return self.frame_cache.frames(sample.path, self.sampler, rng)
        return read_clip(sample.path, self.sampler, backend=self.backend, rng=rng,
                         short_side=self.short_side).frames


class KindBatchSampler(Sampler[list[int]]):
    """Batches of indices that are all images or all videos, so T is constant within a batch.

    The order of epoch ``e`` depends only on (seed, e) — the seed is the generator's initial seed —
    so a resumed run sees the same batches as an uninterrupted one. ``image_ratio`` sets the share
    of image batches per epoch; the rarer kind is then repeated (fresh shuffles) to fill its share.
    ``weights`` (one per sample; xmodal.data.balance) draw each kind's files with replacement in
    proportion to them instead of shuffling, the epoch keeping its length.
    """

    def __init__(self, samples_kinds: Sequence[str], batch_size: int, *, shuffle: bool,
                 drop_last: bool = False, generator: torch.Generator | None = None,
                 image_ratio: float | None = None, seed: int = 0, num_replicas: int = 1,
                 rank: int = 0, pad: bool = True, weights: Sequence[float] | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if image_ratio is not None and not 0.0 < image_ratio < 1.0:
            raise ValueError(f"image_ratio must be in (0, 1), got {image_ratio}")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = generator
        self.image_ratio = image_ratio
        self.seed = seed
        self.epoch = 0
        # Under DDP every rank builds the same epoch order and takes every
        # num_replicas-th batch; padding (repeating the first batches) keeps the
        # step count equal on all ranks, as DistributedSampler does.
        self.num_replicas = num_replicas
        self.rank = rank
        self.pad = pad
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        if self.weights is not None and len(self.weights) != len(samples_kinds):
            raise ValueError(f"{len(self.weights)} weights for {len(samples_kinds)} samples")
        self._groups = {kind: [i for i, k in enumerate(samples_kinds) if k == kind]
                        for kind in ("image", "video")}
        unknown = sorted(set(samples_kinds) - set(self._groups))
        if unknown:
            raise ValueError(f"unknown sample kinds: {', '.join(unknown)}")

    @property
    def base_seed(self) -> int:
        """The seed every epoch's order derives from: the generator's initial seed, or ``seed``."""
        return self.generator.initial_seed() if self.generator is not None else self.seed

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of ``epoch``; call before iterating, like DistributedSampler."""
        self.epoch = epoch

    def __len__(self) -> int:
        total = sum(self._batch_counts().values())
        if self.num_replicas == 1:
            return total
        if self.pad:
            return -(-total // self.num_replicas)
        return len(range(self.rank, total, self.num_replicas))

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.base_seed, self.epoch])
        self.epoch += 1  # without set_epoch, the next pass still gets a new order
        batches = [batch for kind, n in self._batch_counts().items()
                   for batch in self._kind_batches(self._groups[kind], n, rng)]
        if self.shuffle:
            order = rng.permutation(len(batches))
            batches = [batches[i] for i in order]
        else:
            batches.sort(key=lambda b: b[0])
        if self.num_replicas > 1:
            if self.pad and batches:
                short = -len(batches) % self.num_replicas
                batches += (batches * (short // len(batches) + 1))[:short]
            batches = batches[self.rank::self.num_replicas]
        yield from batches

    def _natural_counts(self) -> dict[str, int]:
        size = self.batch_size
        return {kind: len(ids) // size if self.drop_last else -(-len(ids) // size)
                for kind, ids in self._groups.items()}

    def _batch_counts(self) -> dict[str, int]:
        counts = self._natural_counts()
        if self.image_ratio is None or not all(self._groups.values()):
            return counts
        total = sum(counts.values())
        images = min(max(round(self.image_ratio * total), 1), total - 1)
        return {"image": images, "video": total - images}

    def _kind_batches(self, ids: list[int], n_batches: int, rng: np.random.Generator) -> list[list[int]]:
        if n_batches == 0:
            return []
        stream = self._draw(ids, rng)
        # Only with image_ratio can a kind need more indices than it has: cycle through new shuffles.
        while len(stream) < n_batches * self.batch_size and self.image_ratio is not None:
            stream += self._draw(ids, rng)
        size = self.batch_size
        return [stream[i * size:(i + 1) * size] for i in range(n_batches)]

    def _draw(self, ids: list[int], rng: np.random.Generator) -> list[int]:
        """One pass over a kind's samples: as listed, shuffled, or drawn by weight."""
        if not self.shuffle:
            return list(ids)
        if self.weights is None:
            return [ids[i] for i in rng.permutation(len(ids))]
        p = self.weights[ids] / self.weights[ids].sum()
        return [ids[i] for i in rng.choice(len(ids), size=len(ids), p=p)]


class SeededBatchSampler(Sampler[list[tuple[int, int]]]):
    """``KindBatchSampler``'s batches with each index paired with a seed of its own, ``(index,
    seed)``, for ``ClipDataset``: the seed depends only on (base seed, epoch, rank, batch, slot).

    An item's random frames and augmentation then depend neither on how many DataLoader workers
    decode nor on what they drew before: persistent workers carry their RNG streams from epoch
    to epoch, so without per-item seeds a run resumed after a kill (fresh workers) trained
    differently from an uninterrupted one, and a run with 2 workers differently from one with 0.
    The same device as PyTorch's ``worker_init_fn`` recipes for reproducible loading, keyed by
    the item's place in the epoch instead of the worker.
    """

    def __init__(self, batches: KindBatchSampler) -> None:
        self.batches = batches

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle and the item seeds of ``epoch`` (see KindBatchSampler.set_epoch)."""
        self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        key = [self.batches.base_seed, self.batches.epoch, self.batches.rank]  # before iterating
        for b, batch in enumerate(self.batches):
            seeds = np.random.SeedSequence([*key, b]).generate_state(len(batch), dtype=np.uint64)
            yield [(index, int(seed >> np.uint64(1))) for index, seed in zip(batch, seeds, strict=True)]
