"""Turning a TrainConfig's data options into DataLoaders.

Bad files are skipped here, not in the dataset: the dataset raises a named
error, this wrapper turns it into a skip that the training loop can count.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset

from xmodal.config import TrainConfig
from xmodal.errors import DatasetError, InputError

if TYPE_CHECKING:
    from xmodal.data.frame_cache import FrameCache


@dataclass
class Split:
    train: list[Any]
    val: list[Any]
    classes: list[str]
    val_fraction: float = 0.0  # held out of --data / --csv (TrainConfig.val_fraction); 0 with --val


def load_split(cfg: TrainConfig, warn: Callable[[str], None] | None = None) -> Split:
    """Find the training files and hold out validation files (by file, stratified).

    ``warn`` gets the one-line notes on files passed over in the folders (see scan_folder).
    """
    from xmodal.data.samples import read_csv, scan_folder

    if cfg.csv is not None:
        samples, classes = read_csv(cfg.csv, cfg.modality, multi_label=cfg.multi_label)
    elif cfg.data is not None:
        samples, classes = scan_folder(cfg.data, cfg.modality, warn)
    else:
        raise DatasetError(None, "no training data: pass --data DIR or --csv FILE")
    split = _held_out(cfg, samples, classes, warn)
    if cfg.pseudo_csv is not None:  # pseudo-labelled files train, never validate
        extra, _ = read_csv(cfg.pseudo_csv, "mixed", classes=classes)
        split.train.extend(extra)
    return split


def _held_out(cfg: TrainConfig, samples: list[Any], classes: list[str],
              warn: Callable[[str], None] | None) -> Split:
    from xmodal.data.datasets import scan_folder, stratified_split

    if cfg.val is not None:
        val, val_classes = scan_folder(cfg.val, cfg.modality, warn)
        if val_classes != classes:
            missing = sorted(set(val_classes) - set(classes))
            raise DatasetError(cfg.val, f"validation classes differ from training classes "
                                        f"(not in training: {', '.join(missing) or 'none'})")
        if cfg.multi_label:  # a folder gives one label per file: a set of one
            val = [dataclasses.replace(s, label=(s.label,)) for s in val]
        return Split(samples, val, classes)
    fraction = cfg.val_fraction(list(Counter(s.stratum for s in samples).values()))
    if fraction <= 0:
        return Split(samples, [], classes)
    train, val = stratified_split(samples, fraction, seed=cfg.seed)
    return Split(train, val, classes, fraction)


class SkipBadFiles(Dataset):
    """Returns ``(None, path, reason)`` instead of raising for a file that cannot be decoded."""

    def __init__(self, dataset: Dataset, samples: Sequence[Any]) -> None:
        self.dataset = dataset
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Any, Any, str | None]:
        try:
            return self.dataset[key] + (None,)
        except InputError as exc:
            index = key[0] if isinstance(key, tuple) else key  # (index, seed): SeededBatchSampler
            return None, str(self.samples[index].path), exc.reason


def collate_skipping(batch: list[tuple[Any, Any, str | None]], num_classes: int | None = None
                     ) -> tuple[Any, Any, list[str]]:
    """Stack the good clips and their targets (class indices, or multi-hot rows of
    ``num_classes`` for multi-label samples); hand the failures back as ``"path: reason"``."""
    from xmodal.engine.multilabel import targets_tensor

    good = [(clip, label) for clip, label, err in batch if err is None]
    bad = [f"{path}: {err}" for clip, path, err in batch if err is not None]
    if not good:
        return None, None, bad
    clips = torch.stack([c for c, _ in good])
    return clips, targets_tensor([lbl for _, lbl in good], num_classes), bad


def make_loader(samples: list[Any], cfg: TrainConfig, *, train: bool, input_size: int,
                resize_size: int, generator: torch.Generator | None = None, num_replicas: int = 1,
                rank: int = 0, num_classes: int | None = None,
                frame_cache_root: str | None = None) -> DataLoader:
    """One DataLoader whose batches hold only stills or only clips (constant T);
    ``num_classes`` sizes the multi-hot targets of multi-label samples; training videos are
    decoded once into ``frame_cache_root`` when the augmentation allows (see training_frame_cache)."""
    from xmodal.data.datasets import ClipDataset, KindBatchSampler, SeededBatchSampler
    from xmodal.data.transforms import eval_transform, train_transform

    transform = (train_transform(cfg.train_size or input_size, preset=cfg.augment) if train
                 else eval_transform(input_size, resize_size))
    # Validation frames shrink while decoding, as inference's do (the same pixels as the
    # transform's resize); training clips too where the augmentation resizes them the same way.
    frames = cfg.clip_frames_for_training if train else cfg.frames
    cache = training_frame_cache(cfg, input_size, frame_cache_root) if train else None
    dataset = ClipDataset(samples, frames, transform, train=train, backend=cfg.video_backend,
                          short_side=None if train else resize_size, frame_cache=cache)
    weights = None
    if train and cfg.balance == "sampler":
        from xmodal.data.balance import sample_weights

        weights = sample_weights([s.label for s in samples], num_classes)
    sampler = KindBatchSampler([s.kind for s in samples], cfg.batch_size, shuffle=train,
                               generator=generator,
                               image_ratio=cfg.image_ratio if train else None, seed=cfg.seed,
                               num_replicas=num_replicas, rank=rank, pad=train, weights=weights)
    return DataLoader(
        SkipBadFiles(dataset, samples),
        batch_sampler=SeededBatchSampler(sampler) if train else sampler,
        num_workers=cfg.workers,
        collate_fn=functools.partial(collate_skipping, num_classes=num_classes),
        persistent_workers=cfg.workers > 0,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=_limit_worker_threads,
        # Its own generator: each new iterator draws the workers' base seed from it, which would
        # otherwise advance torch's global RNG (dropout's) once per epoch without workers and once
        # per run with persistent ones. Items are seeded on their own (SeededBatchSampler).
        generator=torch.Generator().manual_seed(cfg.seed),
    )


def uses_frame_cache(cfg: TrainConfig) -> bool:
    """Whether a run decodes its training videos once (``frame_cache``): videos among its
    files, an encoder that trains (a linear probe caches features instead), and augmentation
    that resizes clips as evaluation does (``light``, ``strong`` and ``cross`` with one training
    frame crop from full-size frames, which frames shrunk while decoding would change)."""
    from xmodal.data.transforms import resizes_clips_like_evaluation

    return (cfg.frame_cache and cfg.modality != "image" and cfg.finetune != "linear"
            and resizes_clips_like_evaluation(cfg.augment, cfg.clip_frames_for_training))


def training_frame_cache(cfg: TrainConfig, input_size: int, root: str | None) -> FrameCache | None:
    """A FrameCache in ``root`` (which the caller owns) for the training clips, or None when
    there is no root or the run does not use one (uses_frame_cache)."""
    from xmodal.data.frame_cache import FrameCache
    from xmodal.data.transforms import clip_short_side

    if root is None or not uses_frame_cache(cfg):
        return None
    size = cfg.train_size or input_size
    short_side = clip_short_side(size, cfg.augment, cfg.clip_frames_for_training)
    assert short_side is not None  # uses_frame_cache checked the preset
    return FrameCache(root, short_side=short_side, backend=cfg.video_backend)


def _limit_worker_threads(worker_id: int) -> None:
    # Decode workers each get a share of the cores; torch and the decoder inside need one.
    from xmodal.data.video import set_decoder_threads

    torch.set_num_threads(1)
    set_decoder_threads(1)


def describe(samples: Sequence[Any]) -> str:
    kinds = [s.kind for s in samples]
    return f"{kinds.count('video')} videos, {kinds.count('image')} images"
