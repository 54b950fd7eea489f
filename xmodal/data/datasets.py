"""Datasets of images, videos or both, found in class folders or listed in a CSV.

A still image is a clip with T=1, so one dataset serves both kinds; batches
must not mix kinds (T differs), which is what KindBatchSampler guarantees.
Files are only decoded in ``__getitem__``, i.e. inside DataLoader workers.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from xmodal.config import MODALITIES
from xmodal.data.image import IMAGE_EXTENSIONS, load_image
from xmodal.data.sampling import make_sampler
from xmodal.data.transforms import to_clip_tensor
from xmodal.data.video import VIDEO_EXTENSIONS, read_clip
from xmodal.errors import ConfigError, DatasetError
from xmodal.names import from_bytes, name_list, unsupported_message

log = logging.getLogger(__name__)

Kind = Literal["image", "video"]


# Shown first when an error lists the accepted extensions, so the message stays short and familiar.
_COMMON_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".jpg", ".jpeg", ".png")
_HEADER_PATHS = {"path", "file", "filename", "filepath", "file_path", "video", "image", "name"}
_HEADER_LABELS = {"label", "class", "class_name", "category", "target"}


@dataclass(frozen=True)
class Sample:
    """One labelled file; ``kind`` decides whether it is read as a still or a clip. ``label``
    is a class index, or a sorted tuple of them for a multi-label file."""

    path: Path
    label: int | tuple[int, ...]
    kind: Kind

    @property
    def stratum(self) -> int:
        """The class a split keeps in proportion: the label, or a multi-label file's first."""
        return self.label[0] if isinstance(self.label, tuple) else self.label


def kind_of(path: str | os.PathLike[str]) -> Kind | None:
    """Image or video by extension (case-insensitive); None for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return None


def scan_folder(root: str | os.PathLike[str], modality: str = "mixed",
                warn: Callable[[str], None] | None = None) -> tuple[list[Sample], list[str]]:
    """Samples from ``root/<class>/**/<file>`` (ImageFolder / UCF101 layout) and the sorted class names.

    Order is deterministic (classes sorted, files sorted by path) so splits and runs are reproducible.
    Files passed over (unsupported type, or outside the class folders) are named in one ``warn``
    call each (default: this module's logger); hidden files (".name") are passed over silently.
    """
    _check_modality(modality)
    root = Path(root)
    class_dirs = _class_dirs(root)
    found = {d.name: _files_under(d, root) for d in class_dirs}
    wanted = _wanted_kinds(modality)
    if not any(kind_of(f) in wanted for files in found.values() for f in files):
        raise DatasetError(root, f"no {_describe(modality)} files (extensions "
                                 f"{_extension_list(modality)}) in any class folder")
    samples: list[Sample] = []
    for label, class_dir in enumerate(class_dirs):
        files = found[class_dir.name]
        usable = [f for f in files if kind_of(f) in wanted]
        if not usable:
            raise DatasetError(class_dir, _empty_class_reason(files, modality))
        samples += [Sample(f, label, kind_of(f)) for f in usable]  # type: ignore[arg-type]
    _warn_passed_over(root, found, warn or log.warning)  # once the folder is known to be usable
    return samples, [d.name for d in class_dirs]


def read_csv(path: str | os.PathLike[str], modality: str = "mixed",
             classes: Sequence[str] | None = None, *,
             multi_label: bool = False) -> tuple[list[Sample], list[str]]:
    """Samples listed as ``path,label`` rows, and the class names (``classes`` or the sorted labels).

    The header is optional; relative paths are resolved against the CSV's folder so a dataset
    folder with its CSV can be moved as one. Rows of the other modality are skipped, like in folders.
    ``multi_label``: a label cell holds one or more labels separated by ``|`` (``dog|running``),
    and each sample's label is the sorted tuple of their indices.
    """
    _check_modality(modality)
    csv_path = Path(path)
    rows = _read_rows(csv_path)
    if not rows:
        raise DatasetError(csv_path, "no rows (expected lines of 'path,label')")
    wanted = _wanted_kinds(modality)
    kept = [(line, file, label) for line, file, label in rows if _row_kind(csv_path, line, file) in wanted]
    if len(kept) < len(rows):
        log.info("%s: skipped %d rows that are not %s files", csv_path, len(rows) - len(kept),
                 _describe(modality))
    if not kept:
        raise DatasetError(csv_path, f"no {_describe(modality)} files listed "
                                     f"(extensions {_extension_list(modality)})")
    names = {line: _label_names(csv_path, line, label, multi_label) for line, _, label in kept}
    class_names = list(classes) if classes is not None else sorted(set().union(*names.values()))
    index = {name: i for i, name in enumerate(class_names)}
    for line, labels in names.items():
        for label in labels:
            if label not in index:
                raise DatasetError(f"{csv_path}:{line}", f"label {label!r} is not one of the classes "
                                                         f"({_shorten(class_names)})")
    _check_files_exist(csv_path, kept)
    samples = [Sample(file, tuple(sorted({index[n] for n in names[line]})) if multi_label
                      else index[label], kind_of(file))  # type: ignore[arg-type]
               for line, file, label in kept]
    return samples, class_names


def _label_names(csv_path: Path, line: int, cell: str, multi_label: bool) -> list[str]:
    if not multi_label:
        return [cell]
    names = [name.strip() for name in cell.split("|") if name.strip()]
    if not names:
        raise DatasetError(f"{csv_path}:{line}", f"no label in {cell!r}")
    return names


def stratified_split(samples: Sequence[Sample], val_fraction: float,
                     seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Hold out ``val_fraction`` of each class's files (by file, never by frame) for validation.

    Every class with >= 2 files keeps at least one file on each side; within a class the images and
    videos are spread proportionally over both sides. Same seed, same split; input order is kept.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        by_class[sample.stratum].append(i)
    val_ids: set[int] = set()
    for label, members in by_class.items():
        n_val = _val_count(len(members), val_fraction)
        rng = np.random.default_rng([seed, label])
        val_ids.update(_spread_by_kind(members, samples, rng)[:n_val])
    train = [s for i, s in enumerate(samples) if i not in val_ids]
    val = [s for i, s in enumerate(samples) if i in val_ids]
    return train, val


class ClipDataset(Dataset):
    """``(clip, label)`` items: clip is uint8 (T, 3, H, W), T=1 for images and ``num_frames`` for videos.

    No decoder is opened here: each item opens and closes its own file, so the dataset pickles
    cheaply into DataLoader workers and never shares a decoder between processes.
    """

    def __init__(self, samples: Sequence[Sample], num_frames: int,
                 transform: Callable[[Tensor], Tensor] | None, *, train: bool, backend: str = "auto",
                 sampler: str = "tsn", short_side: int | None = None) -> None:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.samples = list(samples)
        self.num_frames = num_frames
        self.transform = transform
        self.train = train
        self.backend = backend
        self.short_side = short_side
        self.sampler = make_sampler(sampler, num_frames, train)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def kinds(self) -> list[Kind]:
        """Per-sample kind, in index order: what KindBatchSampler needs."""
        return [s.kind for s in self.samples]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        sample = self.samples[index]
        clip = to_clip_tensor(self._frames(sample))
        if self.transform is not None:
            clip = self.transform(clip)
        return clip, sample.label

    def _frames(self, sample: Sample) -> np.ndarray:
        if sample.kind == "image":
            return load_image(sample.path)[None]
        # Drawn from torch's RNG, which DataLoader seeds per worker from its generator and which
        # advances across epochs, so frame choices are reproducible yet differ from epoch to epoch.
        rng = np.random.default_rng(int(torch.randint(2**62, (1,)).item())) if self.train else None
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
        base = self.generator.initial_seed() if self.generator is not None else self.seed
        rng = np.random.default_rng([base, self.epoch])
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


def _check_modality(modality: str) -> None:
    if modality not in MODALITIES:
        raise ConfigError(f"modality must be one of {', '.join(MODALITIES)}; got {modality!r}")


def _wanted_kinds(modality: str) -> set[Kind | None]:
    return {"image", "video"} if modality == "mixed" else {modality}  # type: ignore[return-value]


def _describe(modality: str) -> str:
    return "image or video" if modality == "mixed" else modality


def _extensions(modality: str) -> frozenset[str]:
    return {"image": IMAGE_EXTENSIONS, "video": VIDEO_EXTENSIONS}.get(
        modality, IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)


def _extension_list(modality: str, limit: int = 6) -> str:
    exts = sorted(_extensions(modality),
                  key=lambda e: (_COMMON_EXTENSIONS.index(e) if e in _COMMON_EXTENSIONS else 99, e))
    return ", ".join(exts[:limit]) + (", ..." if len(exts) > limit else "")


def _shorten(names: Sequence[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _class_dirs(root: Path) -> list[Path]:
    if not root.exists():
        raise DatasetError(root, "folder does not exist")
    if not root.is_dir():
        raise DatasetError(root, "not a folder (expected one sub-folder per class)")
    dirs = sorted((p for p in root.iterdir() if p.is_dir() and not _hidden(p.name)), key=lambda p: p.name)
    if not dirs:
        loose = sum(1 for p in root.iterdir() if p.is_file() and kind_of(p) is not None)
        hint = f"; it holds {loose} media files: move them into per-class folders" if loose else ""
        raise DatasetError(root, f"no class folders (expected ROOT/<class name>/<files>){hint}")
    return dirs


def _warn_passed_over(root: Path, found: dict[str, list[Path]], warn: Callable[[str], None]) -> None:
    unsupported = [f for files in found.values() for f in files if kind_of(f) is None]
    if unsupported:
        warn(unsupported_message(unsupported))
    loose = sorted(p for p in root.iterdir() if not _hidden(p.name) and not p.is_dir())
    if loose:
        warn(f"ignored {len(loose)} file(s) outside the class folders: {name_list(loose)}")


def _files_under(folder: Path, root: Path) -> list[Path]:
    """Non-hidden files below ``folder``, sorted by relative path.

    Links are followed, but not in circles, and not back into the dataset ``root`` outside this
    class folder: such a link would give another class's files this folder's label.
    """
    files: list[Path] = []
    seen: set[str] = set()
    real_root, real_class = os.path.realpath(root), os.path.realpath(folder)
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen or (_inside(real, real_root) and not _inside(real, real_class)):
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not _hidden(d)]
        files += [Path(dirpath, f) for f in filenames if not _hidden(f)]
    return sorted(files, key=lambda f: f.relative_to(folder).as_posix())


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _empty_class_reason(files: list[Path], modality: str) -> str:
    reason = f"class folder has no {_describe(modality)} files"
    others = [f for f in files if kind_of(f) is not None]
    if others:
        return f"{reason} ({len(others)} {kind_of(others[0])} files do not match modality {modality!r})"
    if files:
        return f"{reason} (only {len(files)} files with other extensions, e.g. {files[0].name})"
    return f"{reason} (it is empty)"


def _read_rows(csv_path: Path) -> list[tuple[int, Path, str]]:
    """(line number, resolved path, label) per data row; blank lines and a header are skipped."""
    if not csv_path.is_file():
        raise DatasetError(csv_path, "CSV file does not exist" if not csv_path.exists() else "not a file")
    try:
        # Bytes that are not UTF-8 (a Latin-1 file name) stay as they are, so the path is the
        # file's own name (see xmodal.names).
        text = from_bytes(csv_path.read_bytes()).removeprefix("\ufeff")
    except OSError as exc:
        raise DatasetError(csv_path, f"cannot read CSV: {exc}") from None
    # skipinitialspace: `clip.mp4, "cat"` is a quoted label after a space, as people write it.
    reader = csv.reader(io.StringIO(text), skipinitialspace=True)
    rows: list[tuple[int, Path, str]] = []
    for fields in reader:
        fields = [f.strip() for f in fields]
        if not any(fields):
            continue
        line = reader.line_num
        if len(fields) != 2:
            raise DatasetError(f"{csv_path}:{line}", f"expected 2 columns (path,label), got {len(fields)}; "
                                                     "quote paths that contain commas")
        if not rows and _is_header(fields):
            continue
        if not fields[0] or not fields[1]:
            raise DatasetError(f"{csv_path}:{line}", "empty path or label")
        rows.append((line, csv_path.parent / Path(fields[0]).expanduser(), fields[1]))
    return rows


def _is_header(fields: list[str]) -> bool:
    # A first row naming the columns, or one whose "path" has no extension (no file could be used anyway).
    named = fields[0].lower() in _HEADER_PATHS and fields[1].lower() in _HEADER_LABELS
    return named or not Path(fields[0]).suffix


def _row_kind(csv_path: Path, line: int, file: Path) -> Kind:
    kind = kind_of(file)
    if kind is None:
        raise DatasetError(f"{csv_path}:{line}", f"{file.name} is neither an image nor a video "
                                                 f"(extensions {_extension_list('mixed')})")
    return kind


def _check_files_exist(csv_path: Path, rows: list[tuple[int, Path, str]], limit: int = 3) -> None:
    missing = [(line, file) for line, file, _ in rows if not file.is_file()]
    if missing:
        shown = "; ".join(f"{file} (line {line})" for line, file in missing[:limit])
        more = f"; and {len(missing) - limit} more" if len(missing) > limit else ""
        raise DatasetError(csv_path, f"{len(missing)} listed files do not exist: {shown}{more}")


def _val_count(n: int, fraction: float) -> int:
    if n < 2 or fraction <= 0:
        return 0
    return min(max(round(n * fraction), 1), n - 1)


def _spread_by_kind(members: list[int], samples: Sequence[Sample], rng: np.random.Generator) -> list[int]:
    """Shuffle each kind, then interleave by relative rank, so any prefix holds the kinds in proportion."""
    keyed: list[tuple[float, float, int]] = []
    for kind in ("image", "video"):
        ids = [i for i in members if samples[i].kind == kind]
        for rank, j in enumerate(rng.permutation(len(ids))):
            keyed.append(((rank + 0.5) / len(ids), float(rng.random()), ids[j]))
    return [i for _, _, i in sorted(keyed)]
