from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.utils import write_video
from xmodal.cli import main
from xmodal.engine.label import RecordWriter, find_files, label_files, merge_parts, read_blocks
from xmodal.engine.predict import Predictor, load_model
from xmodal.engine.reporting import Reporter
from xmodal.errors import DatasetError, InputError


def _cli(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_find_files_is_deterministic_and_ignores_non_media(media_folder: Path) -> None:
    scan = find_files([media_folder])
    files = scan.files
    assert files == sorted(files)
    assert len(files) == 9
    assert scan.unsupported == [media_folder / "notes.txt"]  # passed over, and said so
    by_glob = find_files([media_folder], ("*.jpg",))
    assert by_glob.files == sorted(media_folder.rglob("*.jpg"))
    assert by_glob.unsupported == []  # --glob leaves files out on purpose


def test_find_files_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        find_files([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no files"):
        find_files([tmp_path / "empty"])


def test_symlink_loop_is_not_followed_forever(tmp_path: Path) -> None:
    write_video(tmp_path / "d" / "a.mp4", 4)
    os.symlink(tmp_path / "d", tmp_path / "d" / "loop")
    assert [f.name for f in find_files([tmp_path / "d"]).files] == ["a.mp4"]


def test_label_good_and_bad_files(three_class_checkpoint: Path, media_folder: Path,
                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for f in find_files([media_folder]).files[:3]:
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "zz_broken.mp4").write_bytes(b"\x00\x01garbage" * 50)
    out = tmp_path / "preds.jsonl"
    code = _cli("label", str(folder), "--model", str(three_class_checkpoint), "--out", str(out),
                "--quiet", "--workers", "1")
    assert code == 1  # one file failed
    records = _lines(out)
    assert [Path(r["path"]).name for r in records] == sorted(p.name for p in folder.iterdir())
    bad = records[-1]
    assert set(bad) == {"path", "error"} and "zz_broken.mp4" in bad["path"]
    good = records[0]
    assert {"path", "label", "score", "top", "frames", "duration_s", "model"} <= set(good)
    assert good["label"] in ("alpha", "beta", "gamma")
    err = capsys.readouterr().err
    assert "labelled 3, skipped 0" in err and "failed 1" in err


def test_rerun_skips_done_files_and_overwrite_starts_over(three_class_checkpoint: Path,
                                                          media_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    predictor = Predictor(load_model(three_class_checkpoint), workers=0)
    files = find_files([media_folder]).files
    first = label_files(predictor, files[:4], out)
    assert (first.done, first.skipped) == (4, 0)
    second = label_files(predictor, files, out)
    assert (second.done, second.skipped) == (6, 3)  # a CSV's last file is always redone
    text = out.read_text()
    assert text.count("\n") == 1 + 9  # header + one row per file, nothing duplicated
    third = label_files(predictor, files, out, overwrite=True)
    assert (third.done, third.skipped) == (9, 0)
    assert out.read_text() == text


def test_torn_last_line_is_redone(three_class_checkpoint: Path, media_folder: Path,
                                  tmp_path: Path) -> None:
    predictor = Predictor(load_model(three_class_checkpoint), workers=0)
    files = find_files([media_folder]).files
    full = tmp_path / "full.jsonl"
    label_files(predictor, files, full)
    partial = tmp_path / "partial.jsonl"
    lines = full.read_text().splitlines(keepends=True)
    partial.write_text("".join(lines[:3]) + lines[3][:20])  # crash in the middle of a record
    label_files(predictor, files, partial)
    assert partial.read_text() == full.read_text()


def test_a_csv_cut_between_the_window_rows_of_its_last_file_is_redone(
        three_class_checkpoint: Path, tmp_path: Path) -> None:
    """A file's rows (its own, then one per window) go in one write; a crash can still leave only
    some of them, cut at a row's end, so a CSV's last file is redone whatever its rows look like."""
    folder = tmp_path / "videos"
    for i in range(3):
        write_video(folder / f"v{i}.mp4", 20, size=(64, 48), fps=10)  # 2 s: 4 windows of 0.5 s
    predictor = Predictor(load_model(three_class_checkpoint), workers=0, window_s=0.5)
    files = find_files([folder]).files
    full = tmp_path / "full.csv"
    label_files(predictor, files, full)
    lines = full.read_text().splitlines(keepends=True)
    assert len(lines) == 1 + 3 * 5
    partial = tmp_path / "partial.csv"
    partial.write_text("".join(lines[:-2]))  # the last file's last two window rows lost
    link = tmp_path / "link.csv"
    link.symlink_to(partial)  # the output the user named: cut in place, still a link
    summary = label_files(predictor, files, link)
    assert (summary.done, summary.skipped) == (1, 2)
    assert partial.read_text() == full.read_text() and link.is_symlink()


def test_files_recorded_as_failed_are_tried_again(three_class_checkpoint: Path, media_folder: Path,
                                                  tmp_path: Path) -> None:
    predictor = Predictor(load_model(three_class_checkpoint), workers=0)
    files = find_files([media_folder]).files[:3]
    out = tmp_path / "p.jsonl"
    label_files(predictor, files, out)
    lines = out.read_text().splitlines(keepends=True)
    timeout = json.dumps({"path": str(files[1]), "error": "decoding took longer than 1s (stopped)"})
    out.write_text(lines[0] + timeout + "\n" + lines[2])  # as a run with a short --timeout left it
    summary = label_files(predictor, files, out)
    assert (summary.done, summary.skipped, summary.failed) == (1, 2, 0)
    assert out.read_text() == lines[0] + lines[2] + lines[1]  # the new record moved to the end


def test_resuming_with_another_model_says_so(three_class_checkpoint: Path, media_folder: Path,
                                            tmp_path: Path) -> None:
    predictor = Predictor(load_model(three_class_checkpoint), workers=0)
    files = find_files([media_folder]).files[:2]
    out = tmp_path / "p.jsonl"
    out.write_text(json.dumps({**_record(os.fsencode(str(files[0]))), "model": "runs/other"}) + "\n")
    warnings: list[str] = []
    reporter = Reporter()
    reporter.warning = warnings.append  # type: ignore[method-assign]
    summary = label_files(predictor, files, out, reporter=reporter)
    assert (summary.done, summary.skipped) == (1, 1)
    assert len(warnings) == 1 and "runs/other" in warnings[0] and "--overwrite" in warnings[0]


def test_a_rerun_on_fewer_files_keeps_the_records_of_the_others(three_class_checkpoint: Path,
                                                               media_folder: Path,
                                                               tmp_path: Path) -> None:
    """Only this run's files are redone (a CSV's last, failed ones): `label a/ b/` then
    `label a/` into the same output keeps b/'s records as they were."""
    predictor = Predictor(load_model(three_class_checkpoint), workers=0)
    files = find_files([media_folder]).files
    out = tmp_path / "p.csv"
    label_files(predictor, files, out)
    text = out.read_text()
    out.write_text(text.replace(str(files[1]), str(tmp_path / "failed.mp4"), 1)
                   + f"{tmp_path / 'gone.mp4'},,,,,,,,,,,cannot decode,\n")
    before = out.read_text()
    summary = label_files(predictor, files[:3], out)
    assert (summary.done, summary.skipped) == (1, 2)  # files[1] is no longer recorded
    assert out.read_text().startswith(before)  # the failed record and the last of another run stay


def test_the_same_model_typed_another_way_is_not_another_model(three_class_checkpoint: Path,
                                                               media_folder: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(three_class_checkpoint.parent)
    files = find_files([media_folder]).files[:2]
    out = tmp_path / "p.jsonl"
    label_files(Predictor(load_model(Path(three_class_checkpoint.name)), workers=0), files[:1], out)
    warnings: list[str] = []
    reporter = Reporter()
    reporter.warning = warnings.append  # type: ignore[method-assign]
    label_files(Predictor(load_model(f"./{three_class_checkpoint.name}/"), workers=0), files, out,
                reporter=reporter)
    assert warnings == []


def _record(name: bytes) -> dict:
    return {"path": os.fsdecode(name), "label": "alpha", "score": 0.5,
            "top": [{"label": "alpha", "score": 0.5}], "kind": "image", "frames": 1,
            "duration_s": None, "model": "m"}


NAMES = st.lists(st.binary(min_size=1, max_size=30).filter(lambda b: b"/" not in b and b"\0" not in b),
                 min_size=1, max_size=4, unique=True)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
@settings(max_examples=60, deadline=None)
@given(names=NAMES)
@example(names=[b"caf\xe9.mp4", b"'=x\r\n.jpg", "a\u2028b\x85.jpg".encode()])
def test_every_name_reads_back_for_resume(suffix: str, names: list[bytes],
                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    """Whatever bytes a name holds, the output is readable and gives the same name back, so a
    resumed run skips exactly the files done; merging torchrun parts keeps them too."""
    folder = tmp_path_factory.mktemp("names")
    out = folder / f"out{suffix}"
    with RecordWriter(out) as writer:
        for name in names:
            writer.write(_record(name))
    expected = [os.fsdecode(n) for n in names]
    assert list(read_blocks(out)) == expected
    written = out.read_bytes()
    resumed = RecordWriter(out)  # a CSV's last file is redone: its rows are cut off
    resumed.close()
    assert resumed.done == set(expected if suffix == ".jsonl" else expected[:-1])
    assert list(read_blocks(out)) == expected[:len(resumed.done)]
    out.write_bytes(written)
    if suffix == ".jsonl":
        out.read_bytes().decode("utf-8")  # strict: JSON lines stay valid UTF-8
    else:  # CSV cells hold the names' own bytes (quoted or escaped only where CSV needs it)
        assert all(n in out.read_bytes() for n in names if not set(n) & set(b'",\r\n=+-@\t\''))
    written = out.read_bytes()
    merged = folder / f"merged{suffix}"
    merge_parts(merged, [out], [Path(p) for p in expected])  # drops the part
    assert merged.read_bytes() == written


def _label_cmd(model: Path, folder: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "xmodal", "label", str(folder), "--model", str(model),
            "--out", str(out), "--quiet", "--workers", "1"]


def test_kill_9_then_resume_equals_uninterrupted_run(three_class_checkpoint: Path,
                                                     tmp_path: Path) -> None:
    folder = tmp_path / "many"
    for i in range(24):
        write_video(folder / f"c{i:02d}.mp4", 8, size=(64, 48), fps=8)
    reference = tmp_path / "reference.jsonl"
    subprocess.run(_label_cmd(three_class_checkpoint, folder, reference), check=True)

    out = tmp_path / "killed.jsonl"
    proc = subprocess.Popen(_label_cmd(three_class_checkpoint, folder, out))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 6:
            break
        time.sleep(0.05)
    was_running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if was_running:  # the interesting case: some but not all records written
        assert 0 < out.read_text().count("\n") < 24
    subprocess.run(_label_cmd(three_class_checkpoint, folder, out), check=True)
    assert out.read_text() == reference.read_text()


def test_windows_cover_the_whole_video(three_class_checkpoint: Path, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "long.mp4", 100, size=(64, 48), fps=10)  # 10 s
    predictor = Predictor(load_model(three_class_checkpoint), workers=0, window_s=3.0, stride_s=2.0)
    [record] = predictor.predict([str(clip)])
    clips = record["clips"]
    starts = [c["start_s"] for c in clips]
    assert starts[0] == 0.0
    gaps = [b - a for a, b in zip(starts[:-1], starts[1:], strict=True)]
    assert gaps[:-1] == pytest.approx([2.0] * (len(gaps) - 1))  # every stride seconds ...
    assert 0 < gaps[-1] <= 2.0  # ... and the last window is aligned to the end: no tail dropped
    assert clips[-1]["end_s"] == pytest.approx(10.0, abs=0.11)
    assert all(c["end_s"] - c["start_s"] <= 3.0 + 1e-6 for c in clips)
    assert all(c["label"] in ("alpha", "beta", "gamma") for c in clips)
    assert record["label"] in ("alpha", "beta", "gamma")  # whole-video label beside the windows
