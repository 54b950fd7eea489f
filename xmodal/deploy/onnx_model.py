"""An exported model on ONNX Runtime: ``model.onnx`` + ``model.json``, sha256-verified.

The graph takes uint8 RGB frames (batch, time, S, S, 3), any batch and time, and does the
rest itself: normalisation, the encoder, the head, temporal pooling over time and the scores
(softmax of logits / the run's temperature, or a sigmoid per class for a multi-label run); it
returns ``probabilities`` and pooled ``logits`` (batch, classes), and the pooled ``embedding``
(batch, features; exports made before it was added lack it). This module
imports neither torch nor torchvision: an export directory runs where PyTorch is not installed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.engine.predict import LoadedModel
from xmodal.errors import CheckpointError, InputError

ONNX_NAME = "model.onnx"
META_NAME = "model.json"
EXPORT_FORMAT = "onnx"
INPUT_NAME = "frames"
OUTPUT_NAMES = ("probabilities", "logits", "embedding")
# ONNX Runtime's idle threads spin for work by default; on a CPU shared with the decode workers
# that spinning takes cycles from decoding (docs/performance.md measures both).
ALLOW_SPINNING = "0"


def export_paths(path: str | os.PathLike[str]) -> tuple[Path, Path] | None:
    """(model.onnx, model.json) when ``path`` is an export dir or one of its two files; else None."""
    path = Path(path)
    if path.is_dir():
        onnx_path = path / ONNX_NAME
        return (onnx_path, path / META_NAME) if onnx_path.is_file() else None
    if path.suffix.lower() == ".onnx":
        return path, path.with_suffix(".json")
    if path.suffix.lower() == ".json" and path.with_suffix(".onnx").is_file():
        return path.with_suffix(".onnx"), path
    return None


def is_onnx_export(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an ONNX export (a dir holding model.onnx, or the file itself)."""
    return export_paths(path) is not None


def read_export_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An export's model.json, validated (classes, sha256, format), without loading the graph."""
    paths = export_paths(path)
    if paths is None:
        raise CheckpointError(path, f"not an ONNX export (no {ONNX_NAME})")
    onnx_path, meta_path = paths
    if not meta_path.is_file():
        raise CheckpointError(meta_path, "export metadata file is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(meta_path, f"unreadable export metadata ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise CheckpointError(meta_path, f"not the metadata of an ONNX export (format != {EXPORT_FORMAT!r})")
    classes = meta.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise CheckpointError(meta_path, "export metadata has no list of class names")
    if not isinstance(meta.get("sha256"), str):
        raise CheckpointError(meta_path, f"no sha256 recorded for {onnx_path.name}; "
                              "refusing to load an unverified model")
    return meta


def read_verified_bytes(path: Path, sha256: str, recorded_in: str) -> bytes:
    """The bytes of ``path``, read once and checked against ``sha256`` (what is hashed is what
    is loaded)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read the model ({exc.strerror or exc})") from None
    if hashlib.sha256(data).hexdigest() != sha256.lower():
        raise CheckpointError(path, f"does not match the sha256 recorded in {recorded_in}; "
                              "the file was modified or truncated")
    return data


@dataclass
class OnnxModel(LoadedModel):
    """An export on an ONNX Runtime session (``model``); the same fields as ``LoadedModel``."""

    engine = "onnx"

    def probabilities(self, views: np.ndarray) -> np.ndarray:
        """Scores (N, K) for (N, T, S, S, 3) uint8 RGB views: calibrated softmax probabilities,
        or per-class sigmoids for a multi-label model (the graph applies the metadata's
        ``temperature`` / ``multi_label``)."""
        return self._run(views, OUTPUT_NAMES[0])

    def embeddings(self, views: np.ndarray) -> np.ndarray:
        """Pooled clip embeddings (N, D) for (N, T, S, S, 3) uint8 RGB views."""
        return self._run(views, OUTPUT_NAMES[2])

    @property
    def has_embedding(self) -> bool:
        return OUTPUT_NAMES[2] in {o.name for o in self.model.get_outputs()}

    def logits(self, views: np.ndarray) -> np.ndarray:
        """Temporally pooled logits (N, K) for (N, T, S, S, 3) uint8 RGB views."""
        return self._run(views, OUTPUT_NAMES[1])

    def _run(self, views: np.ndarray, output: str) -> np.ndarray:
        s = self.input_size
        if views.ndim != 5 or views.shape[2:] != (s, s, 3) or views.dtype != np.uint8:
            raise ValueError(f"expected uint8 views (N, T, {s}, {s}, 3), got {views.shape} {views.dtype}")
        return self.model.run([output], {INPUT_NAME: np.ascontiguousarray(views)})[0]


def make_session(model: bytes | str, *, threads: int = 0) -> Any:
    """An ONNX Runtime CPU session with every graph optimisation; ``threads`` 0: one per core."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", ALLOW_SPINNING)
    options.log_severity_level = 3  # errors only: its warnings are about graph fusions
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def load_onnx_model(path: str | os.PathLike[str], *, name: str | None = None) -> OnnxModel:
    """An export dir (or its model.onnx) as an ``OnnxModel``, after checking its sha256."""
    meta = read_export_metadata(path)
    paths = export_paths(path)
    assert paths is not None
    onnx_path, meta_path = paths
    data = read_verified_bytes(onnx_path, meta["sha256"], meta_path.name)
    try:
        session = make_session(data)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own error types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(onnx_path, f"ONNX Runtime cannot load it ({first[:200]})") from None
    return OnnxModel(session, list(meta["classes"]), meta, name or str(path))
