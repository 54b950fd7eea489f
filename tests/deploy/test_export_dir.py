"""An export directory is a model everywhere a run directory is, and its path never imports torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import xmodal
from tests.test_cli import run_cli
from tests.utils import write_image, write_video

ROOT = Path(__file__).resolve().parents[2]


def _one_line_error(code: int, err: str, *needles: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
    assert all(n in lines[0] for n in needles), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alpha/ beta/ gamma/ class folders holding clips and photos."""
    root = tmp_path_factory.mktemp("labelled") / "data"
    for k, name in enumerate(["alpha", "beta", "gamma"]):
        write_video(root / name / f"c{k}.mp4", 12 + k, size=(96, 64), fps=8)
        write_image(root / name / f"p{k}.jpg", size=(60 + k, 50))
    return root


def test_predict_label_eval_and_info_run_from_an_export(exported: Path, labelled: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in labelled.rglob("*.*"))
    code, out, _ = run_cli(capsys, "predict", str(exported), *files, "--format", "json")
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["path"] for r in records] == files
    assert all(r["label"] in ("alpha", "beta", "gamma") and len(r["top"]) == 3 for r in records)

    labels = tmp_path / "labels.jsonl"
    code, _, err = run_cli(capsys, "label", str(labelled), "--model", str(exported), "--out",
                           str(labels), "--quiet", "--workers", "1")
    assert code == 0 and "labelled 6, skipped 0" in err
    assert [json.loads(line)["path"] for line in labels.read_text().splitlines()] == files

    code, out, _ = run_cli(capsys, "eval", str(exported), "--data", str(labelled), "--quiet")
    assert code == 0 and "files: 6 (0 failed to decode)" in out and "video-level top-1" in out

    code, out, _ = run_cli(capsys, "info", str(exported))
    assert code == 0 and "format:     ONNX opset 18, fp32" in out and "alpha, beta, gamma" in out


def test_label_from_an_export_resumes_to_the_same_file(exported: Path, labelled: Path,
                                                       tmp_path: Path) -> None:
    predictor = xmodal.load(exported, workers=0)
    from xmodal.engine.label import find_files, label_files

    files = find_files([labelled]).files
    full, partial = tmp_path / "full.jsonl", tmp_path / "partial.jsonl"
    label_files(predictor, files, full)
    lines = full.read_text().splitlines(keepends=True)
    partial.write_text("".join(lines[:2]) + lines[2][:25])  # a crash in the middle of record 3
    summary = label_files(xmodal.load(exported, workers=0), files, partial)
    assert (summary.skipped, summary.done) == (2, 4)
    assert partial.read_text() == full.read_text()


def test_xmodal_load_predicts_arrays_with_an_export(exported: Path) -> None:
    import numpy as np

    clf = xmodal.load(exported)
    frames = np.random.default_rng(0).integers(0, 256, (4, 120, 160, 3), dtype=np.uint8)
    [record] = clf.predict(frames)
    assert record["kind"] == "array" and record["label"] in clf.classes
    assert record["score"] == pytest.approx(max(t["score"] for t in record["top"]))


def test_an_export_refuses_the_torch_engine_and_the_gpu(exported: Path, labelled: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    photo = str(next(labelled.rglob("*.jpg")))
    code, _, err = run_cli(capsys, "predict", str(exported), photo, "--engine", "torch")
    _one_line_error(code, err, str(exported), "ONNX Runtime only")
    code, _, err = run_cli(capsys, "predict", str(exported), photo, "--device", "cuda")
    _one_line_error(code, err, "ONNX")


def test_exporting_a_fused_unknown_or_exported_model_is_one_line(
        exported: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "x")
    code, _, err = run_cli(capsys, "export", str(checkpoint), str(checkpoint), "--out", out)
    _one_line_error(code, err, "cannot export a fused model (2 models)")
    code, _, err = run_cli(capsys, "export", str(tmp_path / "nope"), "--out", out)
    _one_line_error(code, err, "nope", "no such checkpoint or run directory")
    code, _, err = run_cli(capsys, "export", str(exported), "--out", out)
    _one_line_error(code, err, "already an ONNX export")
    code, _, err = run_cli(capsys, "export", str(checkpoint), "--out", str(checkpoint))
    _one_line_error(code, err, "holds a checkpoint")
    assert not Path(out).exists()


_PROBE = """
import json, sys
from xmodal.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted(m for m in ("torch", "torchvision", "timm") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def _imports(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    print(done.stderr)  # shown when an assertion fails
    return json.loads(done.stderr.strip().splitlines()[-1])


def test_the_onnx_path_imports_no_torch(exported: Path, checkpoint: Path, labelled: Path,
                                        tmp_path: Path) -> None:
    clip = str(next(labelled.rglob("*.mp4")))
    assert _imports("predict", str(exported), clip) == {"code": 0, "heavy": []}
    assert _imports("label", str(labelled), "--model", str(exported), "--out",
                    str(tmp_path / "l.jsonl"), "--quiet") == {"code": 0, "heavy": []}
    assert _imports("eval", str(exported), "--data", str(labelled), "--quiet") == {"code": 0, "heavy": []}
    assert _imports("info", str(exported)) == {"code": 0, "heavy": []}
    assert _imports("embed", str(exported), clip, "--out", str(tmp_path / "e.npy"),
                    "--quiet") == {"code": 0, "heavy": []}
    # A trained run on the CPU: the first call exports it (torch), later ones use the cache.
    run = tmp_path / "run"
    shutil.copytree(checkpoint, run)
    assert _imports("predict", str(run), clip, "--device", "cpu")["code"] == 0
    assert _imports("predict", str(run), clip, "--device", "cpu") == {"code": 0, "heavy": []}
    # and the PyTorch path does import it (the probe can see it)
    assert _imports("predict", str(run), clip, "--engine", "torch")["heavy"] == ["torch"]
