"""Labelled files of a dataset: found in class folders or listed in a CSV, split by file.

Torch-free (``xmodal eval`` on ONNX Runtime and ``xmodal export --int8`` read datasets with
it); ``xmodal.data.datasets`` turns samples into clips for training.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from xmodal.config import MODALITIES
from xmodal.data.image import IMAGE_EXTENSIONS
from xmodal.data.video import VIDEO_EXTENSIONS
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
