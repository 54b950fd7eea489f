"""INT8 export: calibrated on the run's own training data, accuracy reported, same answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.test_cli import run_cli
from xmodal.deploy.onnx_model import load_onnx_model
from xmodal.engine.predict import Predictor

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short run on the shipped samples (112 px to keep it fast on a CPU), holding 2 files of
    each class out for validation (12 per class is below the default's threshold)."""
    from xmodal.config import load_config
    from xmodal.engine.train import fit

    out = tmp_path_factory.mktemp("runs") / "samples"
    fit(load_config(ROOT / "configs" / "samples.yaml", data=str(SAMPLES / "train"), epochs=2,
                    input_size=112, workers=0, out=str(out), val_split=0.2))
    return out


@pytest.fixture(scope="module")
def exports(sample_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from xmodal.deploy.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("exports")
    return {"fp32": export_onnx(sample_run, root / "fp32").out,
            "int8": export_onnx(sample_run, root / "int8", int8=True).out}


def test_a_run_records_where_its_data_is(sample_run: Path) -> None:
    meta = json.loads((sample_run / "model.json").read_text())
    assert meta["data"] == {"data": str((SAMPLES / "train").resolve()), "csv": None, "val": None,
                            "val_split": 0.2, "seed": 0, "modality": "mixed"}


def test_int8_export_is_quantised_calibrated_on_the_run_and_reports_accuracy(
        exports: dict[str, Path]) -> None:
    import onnx

    meta = json.loads((exports["int8"] / "model.json").read_text())
    assert meta["precision"] == "int8"
    quant = meta["quantization"]
    assert quant["format"] == "QDQ" and "per channel" in quant["weights"]
    assert quant["calibration"]["source"] == f"the training split of {(SAMPLES / 'train').resolve()}"
    assert 0 < quant["calibration"]["frames"] <= 300
    val = quant["validation"]
    assert val["files"] == 6  # 2 of the 12 files of each class (val_split 0.2, stratified)
    assert 0.0 <= val["top1_int8"] <= 1.0 and val["top1_fp32"] == 1.0
    proto = onnx.load(str(exports["int8"] / "model.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 48  # every convolution's weights but the stem's (49 in all)
    stem = next(n for n in proto.graph.node if n.op_type == "Conv")
    floats = {t.name for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    assert stem.input[1] in floats  # the stem stays in float (see quantize.first_conv)
    sizes = {k: (v / "model.onnx").stat().st_size for k, v in exports.items()}
    assert sizes["int8"] < 0.4 * sizes["fp32"]


def test_int8_agrees_with_fp32_on_the_shipped_samples(exports: dict[str, Path]) -> None:
    files = sorted(str(p) for p in SAMPLES.rglob("*.*") if p.suffix != ".md")
    fp32 = Predictor(load_onnx_model(exports["fp32"]), workers=0).predict(files)
    int8 = Predictor(load_onnx_model(exports["int8"]), workers=0).predict(files)
    assert len(files) == 38 and all("label" in r for r in fp32 + int8)
    assert [r["label"] for r in int8] == [r["label"] for r in fp32]
    gaps = [abs(a["score"] - b["score"]) for a, b in zip(fp32, int8, strict=True)]
    assert np.mean(gaps) < 0.05


def test_int8_without_recorded_data_needs_calibration(checkpoint: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "int8"
    code, _, err = run_cli(capsys, "export", str(checkpoint), "--int8", "--out", str(out))
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "Traceback" not in err
    assert lines[0] == (f"xmodal: error: {checkpoint}: the model does not record where its training "
                        "data is (trained before xmodal recorded it, or an encoder name); give "
                        "--calibration DIR")
    code, out_text, _ = run_cli(capsys, "export", str(checkpoint), "--int8", "--out", str(out),
                                "--calibration", str(SAMPLES / "demo"), "--quiet")
    assert code == 0
    assert "the model has no validation split" in out_text and "accuracy change not measured" in out_text
    meta = json.loads((out / "model.json").read_text())
    assert meta["quantization"]["calibration"] == {"source": str(SAMPLES / "demo"), "frames": 5}


def test_a_run_with_prediction_time_batchnorm_exports_and_quantises_its_convolutions_only(
        sample_run: Path, tmp_path: Path) -> None:
    """``--test-bn-prior``: the export computes each frame's statistics (checked against PyTorch
    by the export's probe batch), its BatchNorm layers stay unfused, and INT8 quantises only the
    convolutions and matrix products, never the statistics' arithmetic."""
    import shutil

    import onnx

    from xmodal.deploy.onnx_export import export_onnx

    run = tmp_path / "run"
    shutil.copytree(sample_run, run)
    meta = json.loads((run / "model.json").read_text())
    adapted = {"method": "test_bn_prior", "from": str(sample_run), "test_bn_prior": 32.0}
    (run / "model.json").write_text(json.dumps({**meta, "test_bn_prior": 32.0, "adapted": adapted}))
    fp32 = export_onnx(run, tmp_path / "fp32").out
    graph = onnx.load(str(fp32 / "model.onnx")).graph
    assert sum(n.op_type == "BatchNormalization" for n in graph.node) == 49
    exported = json.loads((fp32 / "model.json").read_text())
    assert exported["test_bn_prior"] == 32.0 and exported["adapted"] == adapted  # as xmodal adapt wrote
    int8 = export_onnx(run, tmp_path / "int8", int8=True).out
    proto = onnx.load(str(int8 / "model.onnx"))
    assert sum(n.op_type == "BatchNormalization" for n in proto.graph.node) == 49
    producer = {out: n.op_type for n in proto.graph.node for out in n.output}
    quantized = {producer.get(n.input[0]) for n in proto.graph.node if n.op_type == "QuantizeLinear"}
    # Activations are quantised where they enter a convolution or a product, never inside the
    # statistics' arithmetic (ReduceMean, Sub, Mul, Div, Sqrt, ...).
    assert not quantized & {"ReduceMean", "ReduceSum", "Sub", "Mul", "Div", "Sqrt"}, quantized
    val = json.loads((int8 / "model.json").read_text())["quantization"]["validation"]
    assert val["files"] == 6 and val["top1_int8"] >= val["top1_fp32"] - 1 / 6


def test_only_frame_statistics_restrict_the_quantised_operators() -> None:
    from xmodal.deploy.quantize import op_types

    assert op_types(False) is None  # ONNX Runtime's defaults, as before --test-bn-prior
    assert op_types(True) == ["Conv", "Gemm", "MatMul"]


def test_calibration_names_the_files_it_skips(tmp_path: Path) -> None:
    from xmodal.deploy.quantize import calibration_frames

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00garbage" * 40)
    meta = {"frames": 2, "preprocessing": {"input_size": 32, "resize_size": 36}}
    skipped: list[str] = []
    frames = calibration_frames([broken, SAMPLES / "demo" / "photo.jpg"], meta, 4, skipped=skipped)
    assert frames.shape == (1, 32, 32, 3)
    assert len(skipped) == 1 and skipped[0].startswith(f"{broken}: ")
