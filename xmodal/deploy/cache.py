"""The ONNX export of a trained run, made on first use and kept in the user's cache.

On the CPU a run's checkpoint runs on ONNX Runtime by default (``choose_engine``): the first
time, it is exported (PyTorch, about 10 s for EfficientNet-Lite0 on 2 cores); later runs load
the cached export and never import torch. The cache is not the run folder: xmodal writes only
to paths the user names, and a run folder may be read-only or signed. Entries are keyed by
the sha256 of the run's model.json, which holds the weights' sha256 and the scores' settings
(``temperature``, a multi-label run's ``thresholds``), so new weights or a new calibration get a
new entry; the weights are verified against it on every load, as the PyTorch path does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from xmodal.cache import cache_root
from xmodal.engine.reporting import Reporter
from xmodal.errors import CheckpointError

if TYPE_CHECKING:
    from xmodal.deploy.onnx_model import OnnxModel

# Bump when the exported graph or its metadata change meaning: old entries are then unused.
# 2: the graph applies the run's temperature (or a multi-label run's sigmoid), carries its
# thresholds, and outputs the pooled embedding.
CACHE_FORMAT = 2


def cache_entry(meta_bytes: bytes) -> Path:
    """The folder the export of a checkpoint with this model.json goes to."""
    from xmodal import __version__

    key = hashlib.sha256(meta_bytes + f"|format {CACHE_FORMAT}|xmodal {__version__}".encode())
    return cache_root() / "onnx" / key.hexdigest()[:32]


def load_cached_onnx(ref: str | os.PathLike[str], reporter: Reporter) -> OnnxModel:
    """The run dir or checkpoint ``ref`` on ONNX Runtime, from its cached export (made now if
    missing). The weights are checked against their recorded sha256 first (CheckpointError
    otherwise); a cached model.onnx that fails its own sha256 is exported again."""
    from xmodal.checkpoint import checkpoint_paths, read_metadata, sha256_file
    from xmodal.deploy.onnx_model import load_onnx_model

    weights, meta_path = checkpoint_paths(ref)
    meta = read_metadata(meta_path)
    if sha256_file(weights) != meta["sha256"].lower():
        raise CheckpointError(weights, f"weights do not match the sha256 recorded in {meta_path.name}; "
                              "the file was modified or truncated")
    entry = cache_entry(meta_path.read_bytes())
    if (entry / "model.onnx").is_file():
        try:
            return load_onnx_model(entry, name=str(ref))
        except CheckpointError as exc:
            reporter.warning(f"{ref}: the cached ONNX export is damaged ({exc}); exporting again")
            shutil.rmtree(entry, ignore_errors=True)
    reporter.info(f"{ref}: exporting to ONNX for ONNX Runtime (once; cached in {entry})")
    _export_into(ref, entry)
    return load_onnx_model(entry, name=str(ref))


def _export_into(ref: str | os.PathLike[str], entry: Path) -> None:
    """Export into a fresh folder, then rename it into place (a concurrent exporter may win)."""
    from xmodal.deploy.onnx_export import export_onnx

    entry.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".export-", dir=entry.parent))
    try:
        export_onnx(ref, stage / "model")
        try:
            os.rename(stage / "model", entry)
        except OSError:
            if not (entry / "model.onnx").is_file():
                raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
