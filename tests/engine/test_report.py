"""`xmodal report`: what the report's data and thumbnails hold (the page itself: test_report_browser)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_harness import run_cli
from tests.engine.report_fixtures import many_records, media_tree, read_payload, record, write_jsonl
from xmodal.engine.report import build_report
from xmodal.engine.report.truth import confusion, from_eval_report, from_folder


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return media_tree(tmp_path_factory.mktemp("media"))


def test_thumbnails_are_the_frames_the_model_saw(media: dict[str, Path], tmp_path: Path) -> None:
    from PIL import Image

    from xmodal.data.video import open_video

    r = record(media["a"], "run", 0.9, frames=4)
    summary = build_report(write_jsonl(tmp_path / "p.jsonl", [r]), tmp_path / "out", workers=0)
    assert summary.files == 1 and summary.thumbnails == 1 and summary.thumbnail_errors == []
    entry = read_payload(tmp_path / "out")["files"][0]
    assert entry["t"] == r["sampled_s"] and entry["th"].startswith("thumbs/")
    strip = np.asarray(Image.open(tmp_path / "out" / entry["th"]).convert("RGB"), dtype=np.float64)
    assert strip.shape == (96, 4 * 128, 3)  # 64x48 frames at 96 px high, side by side
    with open_video(media["a"]) as source:
        frames = source.get_frames(list(range(source.info.num_frames)))
    cells = [strip[:, k * 128:(k + 1) * 128] for k in range(4)]
    for k, t in enumerate(r["sampled_s"]):
        shown = np.round(t * 10)  # 10 fps: the frame on screen at t
        errors = [np.abs(cells[k] - np.asarray(Image.fromarray(f).resize((128, 96)), dtype=np.float64)).mean()
                  for f in frames]
        assert int(np.argmin(errors)) == shown and errors[int(shown)] < 8


def test_an_image_strip_and_a_file_that_is_gone(media: dict[str, Path], tmp_path: Path) -> None:
    gone = {**record(media["c"], "run", 0.4), "path": str(tmp_path / "moved.mp4")}
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 10)
    unreadable = {**gone, "path": str(broken)}
    failed = {"path": "x.mp4", "error": "cannot decode 'it' \\ \"really\" </script>"}
    records = [record(media["q"], "walk", 0.7), gone, unreadable, failed]
    summary = build_report(write_jsonl(tmp_path / "p.jsonl", records), tmp_path / "out", workers=0)
    assert summary.failed == 1 and summary.thumbnails == 1
    assert [path for path, _ in summary.thumbnail_errors] == [gone["path"], str(broken)]
    files = read_payload(tmp_path / "out")["files"]
    assert files[0]["k"] == "image" and "te" not in files[0]
    from PIL import Image

    assert Image.open(tmp_path / "out" / files[0]["th"]).size == (72, 96)  # 30x40 photo at 96 px
    assert files[1]["te"] == "no such file" and "th" not in files[1]
    assert "th" not in files[2] and files[2]["te"]  # the decoder's reason, in one line
    assert files[3] == {"p": "x.mp4", "u": Path("x.mp4").absolute().as_uri(), "k": "error",
                        "e": "cannot decode 'it' \\ \"really\" </script>"}


def test_a_repeated_file_is_decoded_once_and_a_second_report_reuses_strips(
        media: dict[str, Path], tmp_path: Path) -> None:
    records = many_records(media, 25)
    src = write_jsonl(tmp_path / "p.jsonl", records)
    build_report(src, tmp_path / "out", workers=0)
    strips = sorted((tmp_path / "out" / "thumbs").iterdir())
    assert len(strips) == 5  # 25 records of 5 files
    stamps = [p.stat().st_mtime_ns for p in strips]
    build_report(src, tmp_path / "out", workers=0)
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "out" / "thumbs").iterdir())] == stamps


def test_a_file_name_that_is_not_utf8(media: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    from tests.media_factory import renamed_to_bytes

    copy = tmp_path / "copy.mp4"
    shutil.copy(media["c"], copy)
    latin1 = renamed_to_bytes(copy, b"caf\xe9.mp4")
    records = [record(latin1, "run", 0.6)]
    src = tmp_path / "p.jsonl"
    from xmodal.engine.output import json_line

    src.write_text(json_line(records[0]) + "\n")  # as `xmodal label` writes it: \udce9 escaped
    summary = build_report(src, tmp_path / "out", workers=0)
    entry = read_payload(tmp_path / "out")["files"][0]
    assert summary.thumbnails == 1 and (tmp_path / "out" / entry["th"]).stat().st_size > 0
    assert entry["p"] == str(tmp_path / "caf\\xe9.mp4")  # shown as the terminal shows it
    assert entry["u"] == (tmp_path.as_uri() + "/caf%E9.mp4")  # the link names the real bytes


def test_timeline_segments_in_seconds(media: dict[str, Path], tmp_path: Path) -> None:
    r = record(media["a"], "run", 0.8, windows=[(0.0, 2.0, "run", 0.9), (1.0, 3.0, "walk", 0.6)])
    build_report(write_jsonl(tmp_path / "p.jsonl", [r]), tmp_path / "out", thumbnails=False)
    entry = read_payload(tmp_path / "out")["files"][0]
    # 30 frames over 3 s; centres at 1.0 and 2.0 s: frames 0-14 take the first window.
    assert entry["c"] == [[0.0, 1.5, "run", 0.9, 0.0, 2.0], [1.5, 3.0, "walk", 0.6, 1.0, 3.0]]
    assert entry["d"] == 3.0 and "th" not in entry and "te" not in entry


def test_ground_truth_from_class_folders(media: dict[str, Path], tmp_path: Path) -> None:
    records = [record(media["a"], "run", 0.9), record(media["p"], "walk", 0.4),
               record(media["b"], "walk", 0.8), record(media["q"], "walk", 0.7),
               record(media["c"], "run", 0.6), {"path": str(media["b"]), "error": "boom"}]
    truth = from_folder(media["a"].parents[1])
    summary = build_report(write_jsonl(tmp_path / "p.jsonl", records), tmp_path / "out", truth=truth,
                           thumbnails=False)
    T = read_payload(tmp_path / "out")["truth"]
    assert T["labels"] == ["run", "walk"] and T["matrix"] == [[1, 1], [0, 2]]
    assert T["count"] == 4 and T["accuracy"] == 0.75 == summary.accuracy
    assert T["without"] == 1  # other/c.mp4
    assert [f.get("g") for f in read_payload(tmp_path / "out")["files"]] == [
        "run", "run", "walk", "walk", None, "walk"]


def test_ground_truth_from_an_eval_report(media: dict[str, Path], tmp_path: Path) -> None:
    data = media["a"].parents[1]
    report = {"classes": ["run", "walk"], "files": 4, "failed": [],
              "video_level": {"top1": 0.5, "top5": 1.0, "count": 4}, "settings": {"data": str(data)}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    truth = from_eval_report(tmp_path / "report.json")
    assert truth.label_of(str(media["b"])) == "walk" and truth.label_of(str(media["c"])) is None
    assert truth.eval_summary["video_level"]["top1"] == 0.5


def test_confusion_counts_only_files_with_truth_and_prediction() -> None:
    result = confusion(["a", "a", "b", None, "b"], ["a", "b", "c", "a", None])
    assert result["labels"] == ["a", "b", "c"]
    assert result["matrix"] == [[1, 1, 0], [0, 0, 1], [0, 0, 0]]
    assert result["accuracy"] == round(1 / 3, 5) and result["count"] == 3
    assert result["recall"] == {"a": 0.5, "b": 0.0}


# --------------------------------------------------------------------------- the command

def test_report_command(media: dict[str, Path], tmp_path: Path) -> None:
    records = [record(media["a"], "run", 0.9), record(media["q"], "run", 0.3)]
    src = write_jsonl(tmp_path / "p.jsonl", records, tail='{"path": "cut')
    run = run_cli("report", str(src), "--data", str(media["a"].parents[1]), "--out", str(tmp_path / "r"),
                  "--workers", "0")
    assert run.code == 0, run.err
    assert run.out == f"report of 2 files (0 failed, accuracy 0.5000): {tmp_path / 'r' / 'index.html'}\n"
    assert run.err_lines == [f"warning: {src}: line 3 is cut off (an interrupted run?); ignored"]
    for name in ("index.html", "report.js", "report.css", "data.js"):
        assert (tmp_path / "r" / name).stat().st_size > 0
    html = (tmp_path / "r" / "index.html").read_text()
    assert "http" not in html.replace("http-equiv", "")  # nothing fetched from the network


@pytest.mark.parametrize("args, message", [
    (["missing.jsonl"], "missing.jsonl: no such file"),
    (["p.txt"], "p.txt: expected the .jsonl output of `xmodal label`"),
    (["bad.jsonl"], "bad.jsonl: line 1 is not valid JSON"),
    (["empty.jsonl"], "empty.jsonl: holds no records"),
    (["p.jsonl", "--eval", "nope.json"], "nope.json: no such file"),
    (["p.jsonl", "--eval", "bad.jsonl"], "bad.jsonl: not a JSON file"),
    (["p.jsonl", "--data", "nowhere"], "nowhere: no such file"),
])
def test_bad_input_is_one_line(media: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               args: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "p.jsonl", [record(media["p"], "run", 0.5)])
    (tmp_path / "p.txt").write_text("x")
    (tmp_path / "bad.jsonl").write_text("{not json}\n{}\n")
    (tmp_path / "empty.jsonl").write_text("")
    run = run_cli("report", *args, "--out", "r")
    assert run.code == 2 and len(run.err_lines) == 1, run.err
    assert run.err_lines[0].startswith(f"xmodal: error: {message}")
    run = run_cli("report", "p.jsonl", "--data", ".", "--eval", "x.json", "--out", "r")
    assert run.code == 2 and "give --data or --eval, not both" in run.err and "Traceback" not in run.err
