"""File names that are not UTF-8 (Latin-1 bytes from old archives, camera cards, Windows shares).

Every command must read such a file, write its name losslessly (JSON escapes, CSV bytes), resume
from its own output, and print to a terminal whose encoding is strict UTF-8 (``cli_harness``)
without a traceback. The files are real: tiny media renamed to raw bytes.
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
from tests.cli_harness import run_cli, tiny_model
from tests.utils import write_image, write_video
from xmodal.names import from_bytes

ROOT = Path(__file__).resolve().parents[1]
CLASS = b"caf\xe9"  # a class folder named in Latin-1
CLASSES = [os.fsdecode(CLASS), "plain"]
SHOWN = "caf\\xe9"  # how a terminal line shows it


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/caf\\xe9/{clip\\xe9.mp4, ph\\xf6to.jpg} and data/plain/{ok.jpg, v.mp4}."""
    root = tmp_path_factory.mktemp("names") / "data"
    latin = root / "tmp"
    latin.mkdir(parents=True)
    mf.renamed_to_bytes(write_video(latin / "a.mp4", 12, fps=10), b"clip\xe9.mp4")
    mf.renamed_to_bytes(write_image(latin / "b.jpg"), b"ph\xf6to.jpg")
    mf.renamed_to_bytes(latin, CLASS)
    write_image(root / "plain" / "ok.jpg", size=(44, 30))
    write_video(root / "plain" / "v.mp4", 10, fps=10)
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny", CLASSES)


def _bytes_paths(data: Path) -> list[bytes]:
    root = os.fsencode(data)
    return [root + b"/caf\xe9/clip\xe9.mp4", root + b"/caf\xe9/ph\xf6to.jpg",
            root + b"/plain/ok.jpg", root + b"/plain/v.mp4"]


def _jsonl_paths(out: Path) -> list[bytes]:
    text = out.read_bytes().decode("utf-8")  # strict: the JSON is valid UTF-8
    return [os.fsencode(json.loads(line)["path"]) for line in text.splitlines()]


def _csv_paths(data: bytes) -> list[bytes]:
    """Column 1 of a CSV read the documented way: bytes that are not UTF-8 kept as they are."""
    return [os.fsencode(row[0]) for row in list(csv.reader(io.StringIO(from_bytes(data))))[1:]]


# -- label ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_label_writes_every_name_and_resumes(suffix: str, model: Path, data: Path,
                                             tmp_path: Path) -> None:
    out = tmp_path / f"labels{suffix}"
    args = ("label", str(data), "--model", str(model), "--out", str(out), "--workers", "0", "--quiet")
    run = run_cli(*args)
    assert run.code == 0, run.err
    assert "labelled 4, skipped 0" in run.err and "Traceback" not in run.err
    full = out.read_bytes()
    paths = _jsonl_paths(out) if suffix == ".jsonl" else _csv_paths(full)
    assert paths == _bytes_paths(data)
    if suffix == ".csv":
        assert b"/caf\xe9/clip\xe9.mp4," in full  # the cell holds the name's own bytes

    # Interrupted in the middle of the second record (a Latin-1 name): resume redoes it.
    first_end = full.index(b"\n", full.index(b"\n") + 1 if suffix == ".csv" else 0) + 1
    out.write_bytes(full[:first_end + 30])
    again = run_cli(*args)
    assert again.code == 0, again.err
    # A CSV's last whole file is redone too (a crash may have kept only some of its rows).
    assert ("labelled 3, skipped 1" if suffix == ".jsonl" else "labelled 4, skipped 0") in again.err
    assert out.read_bytes() == full


def test_label_progress_and_errors_print_on_a_strict_terminal(model: Path, data: Path,
                                                              tmp_path: Path) -> None:
    folder = tmp_path / "with_bad"
    folder.mkdir()
    mf.renamed_to_bytes(mf.random_bytes(folder / "x.mp4"), b"kaputt\xe9.mp4")
    out = Path(os.fsdecode(os.fsencode(tmp_path) + b"/out\xe9.jsonl"))  # the output's name, too
    run = run_cli("label", str(data), str(folder), "--model", str(model), "--out", str(out),
                  "--workers", "0")
    assert run.code == 1  # the broken file failed, the others are done
    assert f"warning: {folder}/kaputt\\xe9.mp4: not a readable video" in run.err
    assert f"wrote {tmp_path}/out\\xe9.jsonl" in run.out  # the summary, without --quiet
    assert len(_jsonl_paths(out)) == 5


# -- predict ---------------------------------------------------------------------------------------


def test_predict_table(model: Path, data: Path) -> None:
    missing = os.fsdecode(os.fsencode(data) + b"/gone\xe9.jpg")
    run = run_cli("predict", str(model), str(data), missing, "--top-k", "1")
    assert run.code == 1  # the missing file
    lines = run.out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [
        f"{data}/{SHOWN}/clip\\xe9.mp4", f"{data}/{SHOWN}/ph\\xf6to.jpg", f"{data}/plain/ok.jpg",
        f"{data}/plain/v.mp4"]
    assert lines[0].split("\t")[1].split(" (")[0] in (SHOWN, "plain")  # class names shown, too
    assert run.err_lines == [f"xmodal: {data}/gone\\xe9.jpg: no such file"]


def test_predict_json(model: Path, data: Path) -> None:
    run = run_cli("predict", str(model), str(data), "--format", "json", "--top-k", "2")
    assert run.code == 0, run.err
    records = [json.loads(line) for line in run.out.splitlines()]
    assert [os.fsencode(r["path"]) for r in records] == _bytes_paths(data)
    assert {t["label"] for t in records[0]["top"]} == set(CLASSES)


def test_predict_csv(model: Path, data: Path) -> None:
    run = run_cli("predict", str(model), str(data), "--format", "csv", "--top-k", "2")
    assert run.code == 0, run.err
    rows = list(csv.reader(io.StringIO(from_bytes(run.out_bytes))))
    assert rows[0] == ["path", "label", "score", "label_2", "score_2", "sampled_s", "error"]
    assert [os.fsencode(r[0]) for r in rows[1:]] == _bytes_paths(data)
    assert {os.fsencode(r[1]) for r in rows[1:]} <= {CLASS, b"plain"}


# -- eval, check ---------------------------------------------------------------------------------


def test_eval_with_a_latin1_class_folder(model: Path, data: Path, tmp_path: Path) -> None:
    run = run_cli("eval", str(model), "--data", str(data), "--out", str(tmp_path / "ev"),
                  "--quiet", "--workers", "0")
    assert run.code == 0, run.err
    report = json.loads((tmp_path / "ev" / "report.json").read_text(encoding="utf-8"))
    assert report["files"] == 4 and report["failed"] == []
    assert list(report["per_class"]) == CLASSES
    assert report["per_class"][CLASSES[0]]["support"] == 2
    assert any(line.startswith(f"{SHOWN}  ") for line in run.out.splitlines())
    assert (tmp_path / "ev" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"


def test_check(data: Path) -> None:
    run = run_cli("check", str(data), "--all", "--quiet", "--workers", "0")
    assert run.code == 0, run.err
    assert any(line.startswith(f"{data}/{SHOWN}/clip\\xe9.mp4: ok (video, ")
               for line in run.out.splitlines())
    as_json = run_cli("check", str(data), "--all", "--json", "--quiet", "--workers", "0")
    results = [json.loads(line) for line in as_json.out.splitlines()]
    assert [os.fsencode(r["path"]) for r in results] == _bytes_paths(data)
    assert all(r["ok"] for r in results)


# -- tools/export_predictions.py ---------------------------------------------------------------


def test_export_predictions(model: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels.jsonl"
    assert run_cli("label", str(data), "--model", str(model), "--out", str(out), "--quiet",
                   "--workers", "0").code == 0
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    tool = [sys.executable, str(ROOT / "tools" / "export_predictions.py")]
    clips, summary = tmp_path / "clips.csv", tmp_path / "videos.csv"
    subprocess.run([*tool, str(out), "--out", str(clips), "--summary", str(summary)],
                   check=True, env=env, capture_output=True)
    assert _csv_paths(clips.read_bytes()) == _bytes_paths(data)
    assert _csv_paths(summary.read_bytes()) == _bytes_paths(data)
    # From the folder directly, into an output whose own name is Latin-1.
    latin_out = os.fsencode(tmp_path) + b"/clips\xe9.csv"
    proc = subprocess.run([*tool, os.fsencode(data), "--model", str(model), "--out", latin_out],
                          env=env, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert b"clips\\xe9.csv" in proc.stdout
    assert _csv_paths(Path(os.fsdecode(latin_out)).read_bytes()) == _bytes_paths(data)


# -- train ---------------------------------------------------------------------------------------


def _train_args(out: Path) -> list[str]:
    return ["--modality", "mixed", "--frames", "2", "--input-size", "64", "--epochs", "1",
            "--batch-size", "4", "--val-split", "0", "--workers", "0", "--quiet", "--min-steps", "0",
            "--out", str(out)]


def test_train_from_a_folder(data: Path, tmp_path: Path) -> None:
    run_dir = Path(os.fsdecode(os.fsencode(tmp_path) + b"/run\xe9"))
    run = run_cli("train", "--data", str(data), *_train_args(run_dir))
    assert run.code == 0, run.err
    assert f"saved: {tmp_path}/run\\xe9" in run.out
    meta = json.loads((run_dir / "model.json").read_text(encoding="utf-8"))
    assert meta["classes"] == CLASSES
    info = run_cli("info", str(run_dir))
    assert f"classes:    2: {SHOWN}, plain" in info.out


def test_train_from_a_csv(data: Path, tmp_path: Path) -> None:
    """The CSV holds the names' bytes (as label writes them): paths and labels in Latin-1."""
    table = tmp_path / "train.csv"
    root = os.fsencode(data)
    table.write_bytes(b"path,label\n" + root + b"/caf\xe9/clip\xe9.mp4,caf\xe9\n"
                      + root + b"/caf\xe9/ph\xf6to.jpg,caf\xe9\n"
                      + root + b"/plain/ok.jpg,plain\n" + root + b"/plain/v.mp4,plain\n")
    run = run_cli("train", "--csv", str(table), *_train_args(tmp_path / "run"))
    assert run.code == 0, run.err
    meta = json.loads((tmp_path / "run" / "model.json").read_text(encoding="utf-8"))
    assert meta["classes"] == CLASSES
