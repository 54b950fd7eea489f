"""``xmodal export``: a trained run (or an encoder's ImageNet classifier) as an ONNX graph.

The graph holds everything a user would otherwise reimplement: uint8 RGB frames in
(batch, time, S, S, 3), normalisation, the encoder, the head, temporal pooling and the scores:
softmax(logits / T) with the run's fitted temperature T, or a sigmoid per class for a
multi-label run (whose per-class thresholds travel in the metadata), exactly as the PyTorch
engine scores them; and the pooled clip embedding that ``xmodal embed`` writes.
It is made with ``torch.onnx.export(dynamo=True)`` (torch.export; the TorchScript exporter is
deprecated and its graph of EfficientNet-Lite0 ran 1.3-1.6x slower on ONNX Runtime here), checked
with ``onnx.checker``, and compared with PyTorch on a probe batch before it is written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from xmodal.deploy.onnx_model import (
    EXPORT_FORMAT,
    INPUT_NAME,
    META_NAME,
    ONNX_NAME,
    OUTPUT_NAMES,
    is_onnx_export,
)
from xmodal.engine.reporting import Reporter
from xmodal.errors import ConfigError, ModelError

# Opset 18: the exporter's own, run by every ONNX Runtime since 1.14 (2023) and by its
# quantisation tools; nothing in these graphs needs a newer one.
DEFAULT_OPSET = 18
# A probe batch's logits must agree with PyTorch's this closely, else the export is refused.
PROBE_TOLERANCE = 1e-4
# Metadata fields that describe the graph's inputs and outputs; copied from the checkpoint.
# The scores' settings (temperature, multi-label thresholds) too, so both engines give one record,
# and how `xmodal adapt` made the run, so `xmodal info` of an export tells it as of the run.
_CARRIED = ("classes", "backbone", "frames", "pooling", "preprocessing", "modality", "config",
            "data", "epoch", "metrics", "temperature", "calibration", "multi_label", "thresholds",
            "threshold_tuning", "test_bn_prior", "adapted")


class ExportGraph(nn.Module):
    """(B, T, S, S, 3) uint8 RGB -> (scores (B, K), pooled logits (B, K), embedding (B, D)):
    the classifier with its preprocessing and temporal pooling inside, as the ONNX graph runs
    it. Scores are ``xmodal.engine.calibration.clip_scores`` of the pooled logits (softmax of
    logits / T, or a sigmoid per class for a multi-label model); the embedding is the head's
    input averaged over time (``xmodal.engine.embed``)."""

    def __init__(self, classifier: nn.Module, meta: dict[str, Any] | None = None) -> None:
        from xmodal.engine.calibration import temperature_of
        from xmodal.engine.multilabel import is_multi_label

        super().__init__()
        self.classifier = classifier
        self.multi_label = is_multi_label(meta or {})
        self.temperature = temperature_of(meta or {})

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, t, h, w, c = frames.shape
        x = frames.reshape(b * t, h, w, c).permute(0, 3, 1, 2).float()
        x = (x - self.classifier.mean) / self.classifier.std
        features = self.classifier.encoder(x)
        logits = self.classifier.head(features).reshape(b, t, -1)
        pooled = self.classifier.pool(logits)
        embedding = features.reshape(b, t, -1).mean(1)
        if self.multi_label:
            return pooled.sigmoid(), pooled, embedding
        # The same operations as clip_scores, so the two engines agree to float rounding.
        scaled = pooled / self.temperature if self.temperature != 1.0 else pooled
        return scaled.softmax(-1), pooled, embedding


@dataclass
class ExportResult:
    out: Path
    meta: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def export_onnx(model: str | os.PathLike[str], out: str | os.PathLike[str], *, int8: bool = False,
                calibration: str | os.PathLike[str] | None = None, calibration_frames: int = 300,
                opset: int = DEFAULT_OPSET, reporter: Reporter | None = None) -> ExportResult:
    """Write ``out/model.onnx`` and ``out/model.json`` for a run dir, checkpoint or encoder name.

    ``int8``: static INT8 quantisation (``xmodal.deploy.quantize``), calibrated on the run's
    training data or on ``calibration`` (a folder of media); the validation split's top-1 with
    fp32 and INT8 goes into the metadata. Raises ModelError / ConfigError with one line.
    """
    reporter = reporter or Reporter()
    out = _check_out(Path(out), model)
    loaded = _load_source(model)
    with tempfile.TemporaryDirectory(prefix=".xmodal-export-", dir=_temp_parent(out)) as tmp:
        stage = Path(tmp) / "export"
        stage.mkdir()
        meta = _export_fp32(loaded, stage / ONNX_NAME, opset)
        notes: list[str] = []
        if int8:
            from xmodal.deploy.quantize import quantize_export

            meta, notes = quantize_export(stage, meta, loaded.meta, calibration=calibration,
                                          frames=calibration_frames, reporter=reporter,
                                          source=str(model))
        _write_meta(stage, meta)
        _publish(stage, out)
    return ExportResult(out, meta, notes)


def _check_out(out: Path, model: Any) -> Path:
    if isinstance(model, (list, tuple)):
        raise ModelError(f"cannot export a fused model ({len(model)} models): export each one, "
                         "then fuse the exports at predict time (--model A --model B)")
    if (out / "model.safetensors").exists():
        raise ConfigError(f"{out}: holds a checkpoint; write the export to a folder of its own")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    return out


def _load_source(model: str | os.PathLike[str]) -> Any:
    from xmodal.engine.predict import load_model

    if Path(model).exists() and is_onnx_export(model):
        raise ModelError(f"{model}: already an ONNX export (export the run it came from)")
    return load_model(model, engine="torch")


def _export_fp32(loaded: Any, path: Path, opset: int) -> dict[str, Any]:
    """The fp32 graph at ``path``, checked and compared with PyTorch; returns its metadata."""
    graph = ExportGraph(loaded.model.float().eval(), loaded.meta).eval()
    size = loaded.input_size
    # Batch and time of 2: a size of 1 in the example would be specialised by torch.export.
    example = torch.randint(0, 256, (2, 2, size, size, 3), dtype=torch.uint8,
                            generator=torch.Generator().manual_seed(0))
    _to_onnx(graph, example, path, opset, loaded.name)
    meta = _graph_meta(loaded, opset)
    _stamp_and_check(path, meta)
    _compare_with_torch(graph, path, size, loaded.name)
    return meta


def _to_onnx(graph: nn.Module, example: Tensor, path: Path, opset: int, name: str) -> None:
    import contextlib
    import io
    import warnings

    from torch.export import Dim

    dynamic = {"frames": {0: Dim("batch", min=1, max=65536), 1: Dim("time", min=1, max=65536)}}
    try:
        # The exporter prints its progress and warns about opset choices: neither is for users.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(graph, (example,), input_names=[INPUT_NAME],
                                        output_names=list(OUTPUT_NAMES), dynamic_shapes=dynamic,
                                        opset_version=opset, dynamo=True, verbose=False,
                                        report=False)
            program.save(str(path))
    except Exception as exc:  # noqa: BLE001 - torch.export raises many types; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{name}: cannot export to ONNX ({type(exc).__name__}: {first[:200]})") from None


def _graph_meta(loaded: Any, opset: int) -> dict[str, Any]:
    import onnxruntime

    from xmodal import __version__

    size = loaded.input_size
    meta = {k: loaded.meta[k] for k in _CARRIED if k in loaded.meta}
    meta.update({
        "format": EXPORT_FORMAT, "onnx": ONNX_NAME, "opset": opset, "precision": "fp32",
        "input": {"name": INPUT_NAME, "dtype": "uint8", "shape": ["batch", "time", size, size, 3],
                  "layout": "RGB frames, batch x time x height x width x channel"},
        "outputs": {"probabilities": _scores_description(loaded.meta),
                    "logits": f"per-frame logits pooled over time ({loaded.meta.get('pooling', 'mean')})",
                    "embedding": "the head's input (the encoder's features) averaged over time"},
        "activation": "sigmoid" if loaded.meta.get("multi_label") else "softmax",
        "embedding_dim": int(loaded.model.encoder.num_features),
        "source": {"model": loaded.name, "sha256": loaded.meta.get("sha256")},
        "exported_with": {"xmodal": __version__, "torch": torch.__version__,
                          "onnxruntime": onnxruntime.__version__},
    })
    meta.setdefault("frames", 8)
    meta.setdefault("pooling", "mean")
    return meta


def _scores_description(meta: dict[str, Any]) -> str:
    from xmodal.engine.calibration import temperature_of

    if meta.get("multi_label"):
        return ("a sigmoid per class of the logits pooled over time; a class is a label when its "
                "score reaches its entry in 'thresholds'")
    temperature = temperature_of(meta)
    if temperature != 1.0:
        return (f"softmax over classes of the logits pooled over time divided by the fitted "
                f"temperature {temperature:g} ('temperature': calibrated scores)")
    return "softmax over classes of the logits pooled over time"


def _stamp_and_check(path: Path, meta: dict[str, Any]) -> None:
    """Put the metadata into the graph's properties and run ``onnx.checker`` on it."""
    import onnx

    proto = onnx.load(str(path))
    stamp = {k: v for k, v in meta.items() if k != "sha256"}
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {"xmodal": json.dumps(stamp, default=str),
                                        "classes": json.dumps(meta["classes"])})
    proto.producer_name = "xmodal"
    onnx.save(proto, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"{path}: the exported graph fails onnx.checker "
                         f"({str(exc).splitlines()[0][:200]})") from None


def _compare_with_torch(graph: nn.Module, path: Path, size: int, name: str) -> None:
    """Refuse an export whose outputs (scores, logits, embedding) differ from PyTorch's on a
    probe batch (B=3, T=2)."""
    from xmodal.deploy.onnx_model import make_session

    probe = torch.randint(0, 256, (3, 2, size, size, 3), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = [out.numpy() for out in graph(probe)]
    got = make_session(str(path)).run(list(OUTPUT_NAMES), {INPUT_NAME: probe.numpy()})
    for output, a, b in zip(OUTPUT_NAMES, got, expected, strict=True):
        diff = float(np.abs(a - b).max())
        if not diff <= PROBE_TOLERANCE:
            raise ModelError(f"{name}: the ONNX graph's {output} differ from PyTorch's by "
                             f"{diff:.2g} (over {PROBE_TOLERANCE:g}); not exported")


def _write_meta(directory: Path, meta: dict[str, Any]) -> None:
    from xmodal.checkpoint import atomic_write_text, sha256_file

    meta = dict(meta, sha256=sha256_file(directory / ONNX_NAME))
    atomic_write_text(directory / META_NAME, json.dumps(meta, indent=2, default=str) + "\n")


def _temp_parent(out: Path) -> Path:
    """Stage beside ``out`` so that publishing is a rename on one filesystem."""
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def _publish(stage: Path, out: Path) -> None:
    """Move model.onnx then model.json into ``out`` (each rename atomic; other files stay)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in (ONNX_NAME, META_NAME):
        os.replace(stage / name, out / name)
    shutil.rmtree(stage, ignore_errors=True)

