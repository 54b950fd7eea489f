"""``xmodal export``: a trained run (or an encoder's ImageNet classifier) as an ONNX graph.

The graph holds everything a user would otherwise reimplement: uint8 RGB frames in
(batch, time, S, S, 3), normalisation, the encoder, the head, temporal pooling and the softmax.
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
_CARRIED = ("classes", "backbone", "frames", "pooling", "preprocessing", "modality", "config",
            "data", "epoch", "metrics")


class ExportGraph(nn.Module):
    """(B, T, S, S, 3) uint8 RGB -> (probabilities, pooled logits), both (B, K): the classifier
    with its preprocessing and temporal pooling inside, as the ONNX graph runs it."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        b, t, h, w, c = frames.shape
        x = frames.reshape(b * t, h, w, c).permute(0, 3, 1, 2).float()
        x = (x - self.classifier.mean) / self.classifier.std
        logits = self.classifier.head(self.classifier.encoder(x)).reshape(b, t, -1)
        pooled = self.classifier.pool(logits)
        return pooled.softmax(-1), pooled


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
    graph = ExportGraph(loaded.model.float().eval()).eval()
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
        "outputs": {"probabilities": "softmax over classes of the logits pooled over time",
                    "logits": f"per-frame logits pooled over time ({loaded.meta.get('pooling', 'mean')})"},
        "activation": "softmax",
        "source": {"model": loaded.name, "sha256": loaded.meta.get("sha256")},
        "exported_with": {"xmodal": __version__, "torch": torch.__version__,
                          "onnxruntime": onnxruntime.__version__},
    })
    meta.setdefault("frames", 8)
    meta.setdefault("pooling", "mean")
    return meta


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
    """Refuse an export whose logits differ from PyTorch's on a probe batch (B=3, T=2)."""
    from xmodal.deploy.onnx_model import make_session

    probe = torch.randint(0, 256, (3, 2, size, size, 3), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = graph(probe)[1].numpy()
    got = make_session(str(path)).run([OUTPUT_NAMES[1]], {INPUT_NAME: probe.numpy()})[0]
    diff = float(np.abs(got - expected).max())
    if not diff <= PROBE_TOLERANCE:
        raise ModelError(f"{name}: the ONNX graph's logits differ from PyTorch's by {diff:.2g} "
                         f"(over {PROBE_TOLERANCE:g}); not exported")


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

