"""Phone photos (HEIC, AVIF) are read upright, and no file is passed over without a word.

A folder holds a HEIC, an AVIF and a JPEG of the same sideways picture with EXIF orientation 6
(as phones save portrait shots), a file of unsupported type and a hidden file. Every command
that scans folders must use the three images and name the unsupported file; hidden files are
passed over silently (documented).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import media_factory as mf
from tests.cli_harness import CliRun, run_cli, tiny_model
from tests.utils import frame_pattern, write_image

ROOT = Path(__file__).resolve().parents[1]
W, H = 48, 32  # stored sideways; upright the photos are H wide and W high
PHOTOS = ["x.heic", "y.avif", "z.jpg"]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/phone/{x.heic, y.avif, z.jpg, notes.xyz, .DS_Store}, data/other/{o.jpg, readme.txt}."""
    root = tmp_path_factory.mktemp("phone") / "data"
    (root / "phone").mkdir(parents=True)
    for name in PHOTOS:
        mf.phone_photo(root / "phone" / name, frame_pattern(4, H, W), orientation=6)
    (root / "phone" / "notes.xyz").write_text("not a photo")
    (root / "phone" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    write_image(root / "other" / "o.jpg", size=(40, 30))
    (root / "other" / "readme.txt").write_text("about these photos")
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny", ["other", "phone"])


def _names_unsupported(run: CliRun, *paths: Path) -> None:
    """One warning names the unsupported files; hidden files are not mentioned."""
    lines = [line for line in run.err_lines if "unsupported type" in line and "warning" in line]
    assert lines == [f"warning: ignored {len(paths)} file{'s' if len(paths) > 1 else ''} of "
                     f"unsupported type (not a video or image): {', '.join(map(str, paths))}"]
    assert ".DS_Store" not in run.err


def test_label(model: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels.jsonl"
    run = run_cli("label", str(data / "phone"), "--model", str(model), "--out", str(out),
                  "--quiet", "--workers", "0")
    assert run.code == 0, run.err
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [Path(r["path"]).name for r in records] == PHOTOS
    assert all(r["kind"] == "image" and r["label"] in ("other", "phone") for r in records)
    _names_unsupported(run, data / "phone" / "notes.xyz")
    assert ("labelled 3, skipped 0 (already in" in run.err
            and "failed 0, ignored 1 of unsupported type;" in run.err)


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_predict(fmt: str, model: Path, data: Path) -> None:
    run = run_cli("predict", str(model), str(data / "phone"), "--format", fmt)
    assert run.code == 0, run.err
    if fmt == "json":
        paths = [json.loads(line)["path"] for line in run.out.splitlines()]
    elif fmt == "csv":
        paths = [row[0] for row in list(csv.reader(io.StringIO(run.out)))[1:]]
    else:
        paths = [line.split("\t")[0] for line in run.out.splitlines()]
    assert [Path(p).name for p in paths] == PHOTOS
    _names_unsupported(run, data / "phone" / "notes.xyz")


def test_check_reads_them_upright_and_lists_what_it_passed_over(data: Path) -> None:
    run = run_cli("check", str(data / "phone"), "--all", "--json", "--quiet", "--workers", "0")
    assert run.code == 0, run.err
    results = [json.loads(line) for line in run.out.splitlines()]
    assert [Path(r["path"]).name for r in results] == [*PHOTOS, "notes.xyz"]
    for r in results[:3]:
        assert r["ok"] and (r["width"], r["height"]) == (H, W), r  # turned upright
    assert results[3] == {"path": str(data / "phone" / "notes.xyz"), "ok": None,
                          "skipped": "unsupported file type '.xyz'"}
    _names_unsupported(run, data / "phone" / "notes.xyz")
    assert "checked 3 files: 3 ok, 0 cannot be decoded; ignored 1 of unsupported type" in run.err


def test_many_unsupported_files_are_counted_and_all_listed_on_request(tmp_path: Path) -> None:
    write_image(tmp_path / "d" / "a.jpg")
    junk = [tmp_path / "d" / f"n{i}.xyz" for i in range(7)]
    for path in junk:
        path.write_text("x")
    run = run_cli("check", str(tmp_path / "d"), "--quiet", "--workers", "0")
    assert (f"warning: ignored 7 files of unsupported type (not a video or image): "
            f"{', '.join(map(str, junk[:5]))}, ... and 2 more") in run.err_lines
    listed = run_cli("check", str(tmp_path / "d"), "--all", "--quiet", "--workers", "0")
    assert [f"{p}: skipped, unsupported file type '.xyz'" for p in junk] == \
        [line for line in listed.out.splitlines() if "skipped" in line]


def test_eval(model: Path, data: Path, tmp_path: Path) -> None:
    (data / "LICENSE").write_text("outside the class folders")
    try:
        run = run_cli("eval", str(model), "--data", str(data), "--out", str(tmp_path / "ev"),
                      "--quiet", "--workers", "0")
    finally:
        (data / "LICENSE").unlink()
    assert run.code == 0, run.err
    report = json.loads((tmp_path / "ev" / "report.json").read_text(encoding="utf-8"))
    assert report["files"] == 4 and report["failed"] == []
    assert report["per_class"]["phone"]["support"] == 3
    _names_unsupported(run, data / "other" / "readme.txt", data / "phone" / "notes.xyz")
    assert f"warning: ignored 1 file(s) outside the class folders: {data / 'LICENSE'}" in run.err_lines


def test_train(data: Path, tmp_path: Path) -> None:
    run = run_cli("train", "--data", str(data), "--modality", "image", "--input-size", "64",
                  "--epochs", "1", "--batch-size", "4", "--val-split", "0", "--workers", "0",
                  "--quiet", "--min-steps", "0", "--out", str(tmp_path / "run"))
    assert run.code == 0, run.err
    _names_unsupported(run, data / "other" / "readme.txt", data / "phone" / "notes.xyz")
    assert "could not be decoded" not in run.err  # the HEIC and AVIF were read
    metrics = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert metrics["epoch"] == 1


def test_export_predictions_from_a_folder(model: Path, data: Path, tmp_path: Path) -> None:
    clips = tmp_path / "clips.csv"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "export_predictions.py"),
                           str(data / "phone"), "--model", str(model), "--out", str(clips)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (f"export_predictions: ignored 1 file of unsupported type (not a video or image): "
            f"{data / 'phone' / 'notes.xyz'}") in proc.stderr.splitlines()
    rows = list(csv.reader(clips.open(encoding="utf-8")))[1:]
    assert [Path(r[0]).name for r in rows] == PHOTOS
