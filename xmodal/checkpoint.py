"""Checkpoints: safetensors weights plus JSON metadata, verified by sha256.

A checkpoint is a directory holding ``model.safetensors`` and ``model.json``
(a training run directory holds its best model this way; ``last/`` inside it
is a second checkpoint used by --resume). No pickle is ever loaded from a
checkpoint, so opening one cannot run code, and the recorded sha256 catches a
weights file that was modified or truncated. Files are written atomically
(temp file in the same directory, fsync, rename, fsync the directory), so a
run killed at any moment leaves whole files behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xmodal.errors import CheckpointError

if TYPE_CHECKING:  # torch loads on use: reading metadata must not cost `import torch`
    import torch
    from torch import nn

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
META_NAME = "model.json"
_CHUNK = 1 << 20


# --------------------------------------------------------------------------- atomic files

def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` so that readers see the old file or the new one, never a torn one."""
    path = Path(path)
    with _staged(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """UTF-8 text written atomically (reports, configs, metadata)."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def _staged(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success fsync it and rename it over ``path``."""
    tmp = _temp_path(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _temp_path(path: Path) -> Path:
    # Same directory, so os.replace is a rename within one filesystem; the dot keeps
    # it out of globs, and the random part lets two writers not collide.
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; not possible (nor needed) on every platform."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks (weights files can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- save / load

def save_checkpoint(model: nn.Module, meta: Mapping[str, Any], directory: str | os.PathLike[str]) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``directory``; returns the directory.

    The JSON holds ``meta`` (classes, backbone, frames, pooling, ...) plus the
    preprocessing (taken from the encoder when ``meta`` lacks it), the weights'
    sha256 and the xmodal version. Both files are staged and fsynced before either
    is renamed into place, so a crash can only land between two renames.
    """
    from safetensors.torch import save_file

    from xmodal import __version__

    directory = Path(directory)
    model = _unwrap(model)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    full_meta = _complete_meta(model, meta)
    weights_path, meta_path = directory / WEIGHTS_NAME, directory / META_NAME
    w_tmp, m_tmp = _temp_path(weights_path), _temp_path(meta_path)
    try:
        # One metadata key: safetensors keeps it in a hash map, so two keys come out in random
        # order and the same weights would hash differently from save to save.
        save_file(tensors, str(w_tmp), metadata={"format": "pt"})
        _fsync_file(w_tmp)
        full_meta.update(weights=WEIGHTS_NAME, sha256=sha256_file(w_tmp), xmodal_version=__version__)
        m_tmp.write_text(json.dumps(full_meta, indent=2, default=str) + "\n", encoding="utf-8")
        _fsync_file(m_tmp)
        # safetensors creates its file for the owner only; the weights get what any new file
        # gets here (0666 less the umask), as model.json does, so whoever reads one reads both.
        os.chmod(w_tmp, stat.S_IMODE(m_tmp.stat().st_mode))
        os.replace(w_tmp, weights_path)
        os.replace(m_tmp, meta_path)
        _fsync_dir(directory)
    finally:
        w_tmp.unlink(missing_ok=True)
        m_tmp.unlink(missing_ok=True)
    log.info("saved checkpoint %s (%d tensors)", directory, len(tensors))
    return directory


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module under torch.compile / DataParallel, whose keys classifier_from_meta rebuilds."""
    from torch import nn

    model = getattr(model, "_orig_mod", model)
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return getattr(model, "_orig_mod", model)


def _complete_meta(model: nn.Module, meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` with what the model itself knows filled in where the caller left it out."""
    if "classes" not in meta:
        raise ValueError("checkpoint metadata must include 'classes'")
    full = dict(meta)
    encoder = getattr(model, "encoder", None)
    cfg = getattr(encoder, "pretrained_cfg", None)
    if cfg is not None:
        full.setdefault("backbone", encoder.name)
        full.setdefault("preprocessing", cfg.preprocessing())
    if isinstance(getattr(model, "pooling", None), str):
        full.setdefault("pooling", model.pooling)
    return full


def checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(weights, metadata) for a run directory, a ``.safetensors`` file or a ``.json`` file."""
    path = Path(path)
    if path.is_dir():
        weights, meta = path / WEIGHTS_NAME, path / META_NAME
        if not meta.is_file() and (path / "last" / META_NAME).is_file():
            raise CheckpointError(path, f"no {META_NAME} (no epoch finished with a best model yet?); "
                                  f"the latest state is in {path / 'last'}")
    elif path.suffix.lower() == ".json":
        weights, meta = path.with_suffix(".safetensors"), path
    elif path.suffix.lower() == ".safetensors":
        weights, meta = path, path.with_suffix(".json")
    elif not path.exists():
        raise CheckpointError(path, "no such checkpoint file or run directory")
    else:
        raise CheckpointError(path, "not a checkpoint (expected a run directory, .safetensors or .json)")
    for p, what in ((meta, "metadata"), (weights, "weights")):
        if not p.is_file():
            raise CheckpointError(p, f"checkpoint {what} file is missing")
    return weights, meta


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, validated, without reading the weights."""
    _, meta_path = checkpoint_paths(path)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(meta_path, f"unreadable checkpoint metadata ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(meta_path, "checkpoint metadata is not a JSON object")
    classes = meta.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise CheckpointError(meta_path, "checkpoint metadata has no list of class names")
    if not isinstance(meta.get("backbone"), str):
        raise CheckpointError(meta_path, "checkpoint metadata does not name its backbone")
    if not isinstance(meta.get("sha256"), str):
        raise CheckpointError(meta_path, "no sha256 recorded for the weights; "
                              "refusing to load unverified weights")
    return meta


def update_metadata(directory: str | os.PathLike[str], **changes: Any) -> None:
    """Set ``changes`` in the ``model.json`` of the checkpoint in ``directory`` (atomically; the
    weights and their sha256 untouched), e.g. to record how a saved run was made."""
    meta_path = Path(directory) / META_NAME
    meta = {**read_metadata(meta_path), **changes}
    atomic_write_text(meta_path, json.dumps(meta, indent=2, default=str) + "\n")


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """CPU tensors of a .safetensors file, memory-mapped; raises what safetensors raises.

    safetensors opens only paths that are valid UTF-8, so a file under a name with other bytes
    (a Latin-1 folder) is read into memory and parsed from there instead.
    """
    from safetensors.torch import load, load_file

    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return load(path.read_bytes())
    return load_file(str(path), device="cpu")


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights (CPU) and metadata, after checking the weights against the recorded sha256."""
    weights_path, meta_path = checkpoint_paths(path)
    meta = read_metadata(meta_path)
    if sha256_file(weights_path) != meta["sha256"].lower():
        raise CheckpointError(weights_path, f"weights do not match the sha256 recorded in {meta_path.name}; "
                              "the file was modified or truncated")
    try:
        return read_safetensors(weights_path), meta
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(weights_path, f"not a valid safetensors file ({first})") from None
