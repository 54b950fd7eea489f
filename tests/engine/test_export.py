from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _records() -> list[dict]:
    top = [{"label": "run", "score": 0.9}]
    return [
        {"path": "a.mp4", "label": "run", "score": 0.8, "top": top, "kind": "video", "frames": 50,
         "duration_s": 5.0, "clips": [
             {"start_s": 0.0, "end_s": 2.0, "label": "run", "score": 0.9, "top": top},
             {"start_s": 2.0, "end_s": 4.0, "label": "=cmd()", "score": 0.6, "top": top},
             {"start_s": 3.0, "end_s": 5.0, "label": "run", "score": 0.7, "top": top}]},
        {"path": "b.jpg", "label": "walk", "score": 0.5, "top": top, "kind": "image", "frames": 1,
         "duration_s": None},
        {"path": "c.mp4", "error": "cannot decode"},
    ]


def test_export_tool_writes_clip_and_summary_tables(tmp_path: Path) -> None:
    src = tmp_path / "preds.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _records()) + '{"path": "torn')
    clips, summary = tmp_path / "clips.csv", tmp_path / "videos.csv"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "export_predictions.py"), str(src),
                           "--out", str(clips), "--summary", str(summary)],
                          capture_output=True, text=True, check=True)
    assert "wrote 4 clip rows" in proc.stdout
    rows = list(csv.reader(clips.open()))
    assert rows[0] == ["path", "start_s", "end_s", "label", "score"]
    assert rows[1] == ["a.mp4", "0.0", "2.0", "run", "0.900000"]
    assert rows[2][3] == "'=cmd()"  # a formula-looking class name is escaped
    assert rows[4] == ["b.jpg", "", "", "walk", "0.500000"]
    srows = list(csv.DictReader(summary.open()))
    assert [r["path"] for r in srows] == ["a.mp4", "b.jpg", "c.mp4"]
    assert srows[0]["num_clips"] == "3" and srows[0]["majority_clip_label"] == "run"
    assert srows[2]["error"] == "cannot decode"


def test_export_tool_bad_input_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "export_predictions.py"),
                           str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "c.csv")],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "nope.jsonl" in proc.stderr


def test_export_tool_labelling_a_folder_exits_1_when_a_file_fails(three_class_checkpoint: Path,
                                                                  tmp_path: Path) -> None:
    from tests.utils import write_image

    folder = tmp_path / "in"
    write_image(folder / "good.jpg", size=(48, 40))
    (folder / "broken.mp4").write_bytes(b"\x00garbage" * 40)
    clips = tmp_path / "clips.csv"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "export_predictions.py"), str(folder),
                           "--model", str(three_class_checkpoint), "--out", str(clips)],
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr  # as xmodal label
    assert "broken.mp4" in proc.stderr and "Traceback" not in proc.stderr
    rows = list(csv.reader(clips.open()))
    assert [Path(r[0]).name for r in rows[1:]] == ["good.jpg"]  # the good file's row is kept
