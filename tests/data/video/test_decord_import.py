"""decord loaded before PyTorch makes later PyTorch work crash (dmlc/decord#293): xmodal's
decord backend loads torch first, whatever the caller imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import sys
from pathlib import Path
from xmodal.data.video import open_video  # imports no torch
assert "torch" not in sys.modules
video, run = Path(sys.argv[1]), Path(sys.argv[2])
with open_video(video, "decord") as source:  # the first thing a script does: read a clip
    source.get_frames([0, 1])
import xmodal
xmodal.load(run, engine="onnx")  # exports to ONNX and checks the export against PyTorch
print("ok")
"""


def test_reading_with_decord_first_leaves_pytorch_working(tmp_path: Path) -> None:
    pytest.importorskip("decord")
    from tests.cli_harness import tiny_model
    from tests.utils import write_video

    video = write_video(tmp_path / "v.mp4", 8, size=(64, 48), fps=8)
    run = tiny_model(tmp_path / "run", ["a", "b"])
    env = {**__import__("os").environ, "XMODAL_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(video), str(run)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]  # was -11 (SIGSEGV) before
    assert proc.stdout.strip().endswith("ok")
