from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.utils import write_image, write_video
from xmodal.cli import main
from xmodal.engine.check import check_files
from xmodal.engine.workers import DecodePool


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_check_lists_bad_files_and_changes_nothing(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    good = write_video(tmp_path / "good.mp4", 12)
    write_image(tmp_path / "ok.png")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.avi").write_text("this is not a video\n" * 20)
    (tmp_path / "junk.jpg").write_bytes(os.urandom(300))
    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    code, out, err = _cli(capsys, "check", str(tmp_path), "--quiet", "--workers", "1")
    assert code == 1
    lines = out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [str(tmp_path / n) for n in
                                                      ("empty.mp4", "junk.jpg", "text.avi")]
    assert "checked 5 files: 2 ok, 3 cannot be decoded" in err
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before
    assert good.exists()


def test_check_all_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_video(tmp_path / "a.mp4", 10, fps=5)
    code, out, _ = _cli(capsys, "check", str(tmp_path), "--all", "--json", "--quiet")
    assert code == 0
    [record] = [json.loads(x) for x in out.splitlines()]
    assert record["ok"] and record["kind"] == "video" and record["frames"] == 10


def _crash(item: str) -> str:
    if item == "abort":
        os.abort()  # what decord does on some corrupt files (C++ terminate)
    if item == "hang":
        import time

        time.sleep(60)
    return item.upper()


def test_pool_survives_a_crashing_and_a_hanging_worker() -> None:
    pool = DecodePool(_crash, workers=2, timeout_s=3.0)
    results = list(pool.imap(["a", "abort", "b", "hang", "c"]))
    assert [r[0] for r in results] == [0, 1, 2, 3, 4]
    assert results[0][1:] == ("A", None) and results[2][1:] == ("B", None)
    assert results[4][1:] == ("C", None)
    assert results[1][1] is None and "crashed" in results[1][2] and "SIGABRT" in results[1][2]
    assert results[3][1] is None and "longer than 3s" in results[3][2]


def test_check_files_reports_in_order(tmp_path: Path) -> None:
    files = [write_video(tmp_path / "v.mp4", 6), tmp_path / "missing.mp4"]
    results = list(check_files(files, workers=0))
    assert results[0]["ok"] and not results[1]["ok"]
    assert "missing.mp4" in results[1]["path"]


def test_check_names_a_video_cut_short_of_what_its_header_declares(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A download cut at 43%: its MP4 header (moov first) still declares every frame; the
    packets hold fewer, which is all a player shows and all xmodal reads."""
    from tests.video_truth import ffmpeg

    whole = tmp_path / "src" / "whole.mp4"
    whole.parent.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-t", "10", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(whole))
    data = whole.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[:int(len(data) * 0.43)])
    code, out, _ = _cli(capsys, "check", str(tmp_path / "cut.mp4"), str(whole), "--quiet",
                        "--workers", "0")
    assert code == 0  # decodable: not a failure
    [line] = out.strip().splitlines()  # the whole file, fine, is not listed without --all
    assert line.startswith(f"{tmp_path / 'cut.mp4'}: ok (") and "declares 250 frames" in line
    [record] = list(check_files([whole], workers=0))
    assert "note" not in record and record["frames"] == 250



_CONVERT_THEN_POOL = """
import sys

import av

from tests.engine.test_check import _crash
from xmodal.engine.workers import DecodePool

if __name__ == "__main__":
    with av.open(sys.argv[1]) as container:  # the caller converts frames as PyAV does by default
        [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    pool = DecodePool(_crash, workers=1, timeout_s=30)
    print([error or result for _, result, error in pool.imap(["a", "abort", "b"])])
"""


def test_a_replaced_worker_does_not_inherit_the_callers_threads(tmp_path: Path) -> None:
    """A worker must start clean: PyAV 18.1.1 keeps a swscale context with its own threads per
    thread; a worker forked from pebble's manager thread (to replace one that crashed) froze
    freeing the main thread's copy, and the pool waited forever (CI hung)."""
    import subprocess
    import sys

    video = write_video(tmp_path / "a.mp4", 10, fps=5)
    script = tmp_path / "convert_then_pool.py"
    script.write_text(_CONVERT_THEN_POOL)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    run = subprocess.run([sys.executable, str(script), str(video)], timeout=60,
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    first, crashed, last = run.stdout.strip().strip("[]").split(", ")
    assert (first, last) == ("'A'", "'B'")
    assert "crashed (SIGABRT)" in crashed


def test_a_script_without_a_main_guard_gets_one_clear_error(tmp_path: Path) -> None:
    """Workers import the caller's script (as Python's spawn and forkserver do); unguarded, no
    worker starts: one error naming the fix, not a failure per file."""
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(_CONVERT_THEN_POOL.replace('if __name__ == "__main__":\n', "if True:\n"))
    video = write_video(tmp_path / "a.mp4", 4, fps=5)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    run = subprocess.run([sys.executable, str(script), str(video)], timeout=60,
                         capture_output=True, text=True, env=env)
    assert run.returncode != 0 and run.stdout == ""
    assert "XmodalError: decode workers could not start" in run.stderr
    assert 'if __name__ == "__main__":' in run.stderr.splitlines()[-1]
