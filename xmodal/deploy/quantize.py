"""``xmodal export --int8``: static INT8 quantisation with ONNX Runtime's tools.

QDQ format, per-channel INT8 weights, UINT8 activations whose ranges are calibrated (MinMax)
on a few hundred frames from the run's own training files (recorded in its model.json by
``xmodal train``) or from ``--calibration DIR``; every layer but the first convolution, which
stays in float (``first_conv``). The frames go through the same torch-free preprocessing as
inference on ONNX Runtime. The validation split's top-1 with fp32 and INT8 is measured at
export time and recorded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.deploy.onnx_model import INPUT_NAME, ONNX_NAME
from xmodal.engine.reporting import Reporter
from xmodal.errors import ConfigError, DatasetError, ModelError, XmodalError

# Frames per calibration batch fed to the calibrator.
_BATCH = 16


def quantize_export(stage: Path, meta: dict[str, Any], source_meta: dict[str, Any], *,
                    calibration: str | os.PathLike[str] | None, frames: int, reporter: Reporter,
                    source: str) -> tuple[dict[str, Any], list[str]]:
    """Replace ``stage/model.onnx`` (fp32) by its INT8 version; returns (metadata, notes)."""
    files, where = calibration_files(source_meta, calibration, source)
    reporter.info(f"calibrating on up to {frames} frames from {where}")
    skipped: list[str] = []
    samples = calibration_frames(files, meta, frames, skipped=skipped)
    if skipped:
        reporter.warning(f"{len(skipped)} calibration file(s) skipped: " + "; ".join(skipped[:3])
                         + (" ..." if len(skipped) > 3 else ""))
    fp32 = stage / "fp32.onnx"
    os.replace(stage / ONNX_NAME, fp32)
    statistics = bool(source_meta.get("test_bn_prior"))
    if statistics:
        reporter.warning("this run normalises each frame by its own statistics (--test-bn-prior): "
                         "its INT8 graph ran slower than its fp32 one on a 2-core CPU "
                         "(tools/bench_test_time_norm.py); compare before deploying it")
    quantize_file(fp32, stage / ONNX_NAME, samples, work=stage, frame_statistics=statistics)
    from xmodal.deploy.onnx_export import _stamp_and_check

    meta = dict(meta, precision="int8", quantization={
        "method": "static", "format": "QDQ", "weights": "int8, per channel",
        "activations": "uint8, per tensor, MinMax calibration",
        "float": "the first convolution (the encoder's stem)",
        "tool": "onnxruntime.quantization.quantize_static",
        "calibration": {"source": where, "frames": int(len(samples))}})
    notes = [f"calibrated on {len(samples)} frames from {where}"]
    validation = _validation(source_meta, fp32, stage / ONNX_NAME, meta, reporter)
    if validation is not None:
        meta["quantization"]["validation"] = validation
        notes.append(f"validation split ({validation['files']} files): top-1 fp32 "
                     f"{validation['top1_fp32']:.4f}, int8 {validation['top1_int8']:.4f} "
                     f"({validation['top1_int8'] - validation['top1_fp32']:+.4f}); same top-1 "
                     f"label on {validation['agreement']:.1%} of files")
    else:
        notes.append("the model has no validation split (it trained on every file, or its data "
                     "is not recorded): accuracy change not measured; --val-split holds files "
                     "out when training")
    _stamp_and_check(stage / ONNX_NAME, meta)
    fp32.unlink()
    return meta, notes


def calibration_files(meta: dict[str, Any], calibration: str | os.PathLike[str] | None,
                      source: str) -> tuple[list[Path], str]:
    """Media files to calibrate on, and where they come from (a folder, or the run's training split)."""
    from xmodal.engine.inputs import scan_paths

    if calibration is not None:
        if not Path(calibration).exists():
            raise DatasetError(calibration, "no such calibration folder")
        files = scan_paths([calibration]).files
        if not files:
            raise DatasetError(calibration, "no video or image files to calibrate on")
        return files, str(calibration)
    split = recorded_split(meta, source)
    if split is None:
        raise ConfigError(f"{source}: the model does not record where its training data is (trained "
                          "before xmodal recorded it, or an encoder name); give --calibration DIR")
    train, _, _ = split
    root = meta["data"].get("data") or meta["data"].get("csv")
    return [s.path for s in train], f"the training split of {root}"


def recorded_split(meta: dict[str, Any], source: str) -> tuple[list[Any], list[Any], list[str]] | None:
    """(train, val, classes) samples rebuilt from the run's recorded data location; None if none."""
    data = meta.get("data")
    if not isinstance(data, dict) or not (data.get("data") or data.get("csv")):
        return None
    from xmodal.config import TrainConfig
    from xmodal.engine.data import load_split

    cfg = TrainConfig(data=data.get("data"), csv=data.get("csv"), val=data.get("val"),
                      val_split=_recorded_val_split(data), seed=int(data.get("seed", 0)),
                      modality=str(data.get("modality", "video")),
                      multi_label=bool(meta.get("multi_label")))  # its CSV's "a|b" cells
    try:
        split = load_split(cfg)
    except XmodalError as exc:
        raise DatasetError(data.get("data") or data.get("csv"),
                           f"the run's recorded training data cannot be read ({exc}); "
                           "give --calibration DIR") from None
    return split.train, split.val, split.classes


def _recorded_val_split(data: dict[str, Any]) -> float | None:
    """The run's held-out fraction: runs made before it was recorded held out 0.2; runs since
    record the fraction they resolved, and null only beside a validation folder (``val``)."""
    value = data.get("val_split", 0.2)
    return None if value is None else float(value)


def calibration_frames(files: Sequence[Path], meta: dict[str, Any], count: int, seed: int = 0, *,
                       skipped: list[str] | None = None) -> np.ndarray:
    """Up to ``count`` preprocessed frames (N, S, S, 3) uint8 from ``files`` in a seeded random
    order: each video gives its TSN segment centres, each image itself; bad files are skipped
    (appended to ``skipped`` as "path: reason")."""
    from xmodal.engine.inputs import ClipReader

    if count < 1:
        raise ConfigError(f"--calibration-frames must be >= 1, got {count}")
    reader = ClipReader.from_meta(meta, arrays="numpy")
    order = np.random.default_rng(seed).permutation(len(files))
    got: list[np.ndarray] = []
    total = 0
    for i in order:
        try:
            views, _ = reader(str(files[i]))
        except XmodalError as exc:
            if skipped is not None:
                skipped.append(f"{files[i]}: {getattr(exc, 'reason', exc)}")
            continue
        clip = views[0]
        got.append(clip)
        total += len(clip)
        if total >= count:
            break
    if not got:
        raise DatasetError(str(files[0].parent) if files else None, "no calibration file could be decoded")
    return np.concatenate(got)[:count]


def quantize_file(fp32: Path, out: Path, frames: np.ndarray, *, work: Path,
                  frame_statistics: bool = False) -> None:
    """Static QDQ quantisation of ``fp32`` into ``out``, calibrated on ``frames`` (N, S, S, 3).
    ``frame_statistics``: the graph computes per-frame BatchNorm statistics (``--test-bn-prior``;
    see ``op_types``)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[np.ndarray] = iter(
                [frames[i:i + _BATCH, None] for i in range(0, len(frames), _BATCH)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch)}

    prepared = work / "prepared.onnx"
    try:
        # Shape inference and graph clean-up first, as ONNX Runtime's documentation asks.
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(str(prepared), str(out), Frames(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=[first_conv(prepared)],
                        op_types_to_quantize=op_types(frame_statistics))
    except Exception as exc:  # noqa: BLE001 - the quantiser raises many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{fp32.name}: INT8 quantisation failed "
                         f"({type(exc).__name__}: {first[:200]})") from None
    finally:
        prepared.unlink(missing_ok=True)
        for leftover in work.glob("augmented_model*.onnx"):
            leftover.unlink(missing_ok=True)


def op_types(frame_statistics: bool) -> list[str] | None:
    """Which operators to quantise: ONNX Runtime's defaults (None), or only the convolutions and
    matrix products when the graph normalises each frame by its own statistics (prediction-time
    BatchNorm, ``xmodal.models.test_time_norm``), whose arithmetic quantised to 8 bits cost 3
    points of top-1 on a digits run's test stills (N = 16: fp32 0.904, INT8 0.874, 0.888 with
    it left in float; docs/results/int8_test_bn_2026-12-07.txt)."""
    return ["Conv", "Gemm", "MatMul"] if frame_statistics else None


def first_conv(model: Path) -> str:
    """The name of the graph's first convolution (the encoder's stem), which stays in float.

    Measured on a digits run (tools/bench_int8.py): quantising everything lost 20 points of
    top-1; everything but the stem, 1.25 (the stem sees raw pixels; its three input channels
    make it cheap in float: under 3% of EfficientNet-Lite0's multiply-adds).
    """
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    for node in graph.node:  # ONNX keeps nodes in topological order
        if node.op_type == "Conv":
            return node.name
    raise ModelError(f"{model.name}: no convolution to quantise")


def _validation(source_meta: dict[str, Any], fp32: Path, int8: Path, meta: dict[str, Any],
                reporter: Reporter) -> dict[str, Any] | None:
    """Top-1 of the fp32 and INT8 graphs on the run's validation split (None if it has none,
    or for a multi-label run, which top-1 does not measure)."""
    if source_meta.get("multi_label"):
        return None
    split = recorded_split(source_meta, str(fp32))
    if split is None or not split[1]:
        return None
    _, val, classes = split
    reporter.info(f"scoring the validation split ({len(val)} files) with fp32 and int8")
    labels = np.array([s.label for s in val])
    paths = [str(s.path) for s in val]
    preds = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        preds[name] = _top1(path, meta, paths)
    ok = (preds["fp32"] >= 0) & (preds["int8"] >= 0)
    if not ok.any():
        return None
    return {"files": int(ok.sum()),
            "top1_fp32": round(float((preds["fp32"][ok] == labels[ok]).mean()), 5),
            "top1_int8": round(float((preds["int8"][ok] == labels[ok]).mean()), 5),
            "agreement": round(float((preds["fp32"][ok] == preds["int8"][ok]).mean()), 5)}


def _top1(onnx_path: Path, meta: dict[str, Any], paths: list[str]) -> np.ndarray:
    """Predicted class per file (-1 where decoding failed), with the ONNX Runtime predictor."""
    from xmodal.deploy.onnx_model import OnnxModel, make_session
    from xmodal.engine.predict import Predictor

    model = OnnxModel(make_session(str(onnx_path)), list(meta["classes"]), meta, str(onnx_path))
    out = np.full(len(paths), -1)
    for index, probs, info, _ in Predictor(model, workers=0).iter_probabilities(paths):
        if probs is not None:
            out[index] = int(probs[:info.get("n_avg", 1)].mean(0).argmax())
    return out
