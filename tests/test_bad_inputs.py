"""Bad files never cost a result: each one is reported in one line and every other file is done.

One folder holds every kind of broken, odd or hostile file (written by tests/media_factory.py)
next to good ones. ``xmodal predict``, ``label`` and ``eval`` run once over it and training
once on it; then each file is checked on its own, in every command. A dataset of nothing but
bad files must stop with one clear error. The CLI runs in this process with file descriptors
1 and 2 captured, so what the forked decode workers print is checked too.

The model is a tiny checkpoint (pretrained EfficientNet-Lite0, 2 frames, 64 px): the decoding
and reporting under test are the same as for any model, and 224 px x 8 frames would cost more
than this whole file on a 2-core machine.
"""

from __future__ import annotations

import builtins
import contextlib
import csv
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import media_factory as mf
from tests.cli_harness import CliRun, run_cli, tiny_model
from tests.utils import write_image, write_video
from xmodal.cli import main
from xmodal.config import TrainConfig, load_config
from xmodal.data.datasets import kind_of, read_csv, scan_folder
from xmodal.engine.reporting import Reporter
from xmodal.engine.train import FitResult, fit
from xmodal.errors import DatasetError

OK, ERROR, EITHER = "ok", "error", "either"  # EITHER: frames up to a break, or a clean error


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], Path]
    expect: str
    reason: str = ""  # what the one-line error must say, as a regex


def _good_video(path: Path, frames: int = 16) -> Path:
    return write_video(path, frames)


def _good_image(path: Path) -> Path:
    return write_image(path)


CASES = [
    Case("good clip.mp4", _good_video, OK),
    Case("good photo.jpg", _good_image, OK),
    # Videos that cannot give a single frame.
    Case("truncated.mp4", mf.truncated_mp4, ERROR, "^not a readable video"),
    Case("empty.mp4", mf.zero_byte, ERROR, r"^empty file \(0 bytes\)$"),
    Case("random.mp4", mf.random_bytes, ERROR, "^not a readable video"),
    Case("text.avi", mf.text_file, ERROR, "^not a readable video"),
    Case("header_only.mkv", mf.mkv_header_only, ERROR, "^not a readable video"),
    Case("zeroed_frames.mp4", mf.zeroed_packets_mp4, ERROR, "^no frame could be decoded"),
    Case("kaputt ünï.avi", mf.random_bytes, ERROR, "^not a readable video"),
    Case("self_loop.mp4", mf.symlink_to_itself, ERROR, "^broken symbolic link"),
    # Videos that break part-way, or are merely unusual.
    Case("truncated_index_first.mp4", mf.truncated_faststart_mp4, OK),  # frames up to the cut
    Case("corrupt_second_half.avi", mf.corrupt_second_half_avi, EITHER),
    Case("one_frame.mp4", mf.one_frame_video, OK),
    Case("rotated.mp4", mf.rotated_video, OK),
    Case("variable_rate.mkv", mf.variable_frame_rate_mkv, OK),
    Case("vidéo ünï 東京.mp4", partial(_good_video, frames=8), OK),
    # Images.
    Case("empty.jpg", mf.zero_byte, ERROR, "^not a recognised image format$"),
    Case("zero_size.png", mf.zero_size_png, ERROR, "^not a recognised image format$"),
    Case("bomb.png", mf.decompression_bomb_png, ERROR, "decompression bomb"),
    Case("bomb_under_2x.png", partial(mf.decompression_bomb_png, side=10_000), ERROR,
         "decompression bomb"),  # Pillow only warns between 1x and 2x its limit
    Case("animated.gif", mf.animated_gif, OK),
    Case("gray16.png", mf.png_16bit, OK),
    Case("cmyk.jpg", mf.cmyk_jpeg, OK),
    Case("palette_alpha.png", mf.palette_png_with_transparency, OK),
    Case("one_pixel.png", mf.one_pixel_png, OK),
    Case("фото 写真.jpg", _good_image, OK),
]
BY_NAME = {case.name: case for case in CASES}
NAMES = [case.name for case in CASES]
CLASSES = ["cases", "good"]


class RecordingReporter(Reporter):
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message: str) -> None:
        self.warnings.append(message)


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Two OpenMP threads on two busy cores spin-wait; one thread is many times faster."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROOT/cases/ holds every case, plus an empty folder named like a video and a link to
    itself (neither is a file: a walk goes into each once); ROOT/good/ two good files."""
    root = tmp_path_factory.mktemp("bad_inputs") / "data"
    cases = root / "cases"
    cases.mkdir(parents=True)
    for case in CASES:
        case.make(cases / case.name)
    mf.directory(cases / "folder.mp4")
    mf.symlink_to_parent(cases / "loop")
    _good_video(root / "good" / "clip.mp4", 12)
    _good_image(root / "good" / "photo.png")
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny", CLASSES)


def _by_name(records: list[dict], folder: Path) -> dict[str, dict]:
    return {str(Path(r["path"]).relative_to(folder)): r for r in records}


@pytest.fixture(scope="module")
def predicted(model: Path, dataset: Path) -> tuple[CliRun, list[dict]]:
    run = run_cli("predict", str(model), str(dataset / "cases"), "--format", "json",
                  "--batch-size", "4", "--top-k", "2")
    return run, [json.loads(line) for line in run.out.splitlines()]


@pytest.fixture(scope="module")
def labelled(model: Path, dataset: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[CliRun, list[dict]]:
    out = tmp_path_factory.mktemp("label") / "labels.jsonl"
    run = run_cli("label", str(dataset / "cases"), "--model", str(model), "--out", str(out),
                  "--quiet", "--batch-size", "4")
    return run, [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def evaluated(model: Path, dataset: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[CliRun, dict]:
    out = tmp_path_factory.mktemp("eval")
    run = run_cli("eval", str(model), "--data", str(dataset), "--out", str(out), "--quiet",
                  "--batch-size", "4")
    return run, json.loads((out / "report.json").read_text(encoding="utf-8"))


def test_eval_keeps_its_report_when_stdout_closes(model: Path, dataset: Path,
                                                  tmp_path: Path) -> None:
    """`xmodal eval --out DIR | head -1`: the reader goes away, the computed report must not."""
    out = tmp_path / "eval"
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to stdout now fails with EPIPE
    sys.stdout.flush()
    saved_fd, saved_stream = os.dup(1), sys.stdout
    os.dup2(write_end, 1)
    os.close(write_end)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
    code = 0
    try:
        main(["eval", str(model), "--data", str(dataset), "--out", str(out), "--quiet",
              "--batch-size", "4"])
    except SystemExit as exc:
        code = exc.code
    finally:
        with contextlib.suppress(BrokenPipeError):
            sys.stdout.close()
        sys.stdout = saved_stream
        os.dup2(saved_fd, 1)
        os.close(saved_fd)
    assert code != 0  # the output was cut short
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["files"] >= 1 and (out / "confusion_matrix.png").stat().st_size > 0


def _train_config(data: Path, out: Path) -> TrainConfig:
    return load_config(None, data=str(data), modality="mixed", frames=2, epochs=1, batch_size=4,
                       workers=0, input_size=64, val_split=0.0, warmup_epochs=0.0,
                       out=str(out), min_steps=0)


@pytest.fixture(scope="module")
def trained(dataset: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[FitResult, RecordingReporter]:
    reporter = RecordingReporter()
    result = fit(_train_config(dataset, tmp_path_factory.mktemp("train") / "run"), reporter)
    return result, reporter


# -- per file, per command ----------------------------------------------------------------------


def _check_record(case: Case, record: dict) -> None:
    """An error record is exactly {path, error}, error one line; a result is a real guess."""
    if "error" in record:
        assert case.expect in (ERROR, EITHER), f"{case.name} should decode: {record['error']}"
        assert set(record) == {"path", "error"}
        _check_reason(case, record["error"])
    else:
        assert case.expect in (OK, EITHER), f"{case.name} must be an error, got {record}"
        assert record["label"] in CLASSES and record["frames"] >= 1
        assert record["kind"] == kind_of(case.name)


def _check_reason(case: Case, reason: str) -> None:
    assert reason and "\n" not in reason and len(reason) <= 500, reason
    assert "Traceback" not in reason
    # decord stamps its messages with the time of day; a reason must not change run to run.
    assert not re.search(r"\[\d\d:\d\d:\d\d\]|\.cc:\d+", reason), reason
    assert "Check failed" not in reason, reason  # decord's C++ assertion text is not a reason
    if case.reason:
        assert re.search(case.reason, reason), reason


def _reported_lines(run: CliRun, path: Path, prefix: str) -> list[str]:
    return [line for line in run.err_lines if line.startswith(f"{prefix}{path}: ")]


@pytest.mark.parametrize("name", NAMES)
def test_predict(name: str, predicted: tuple[CliRun, list[dict]], dataset: Path) -> None:
    run, records = predicted
    path = dataset / "cases" / name
    record = _by_name(records, dataset / "cases")[name]
    _check_record(BY_NAME[name], record)
    lines = _reported_lines(run, path, "xmodal: ")
    assert lines == ([f"xmodal: {path}: {record['error']}"] if "error" in record else [])


@pytest.mark.parametrize("name", NAMES)
def test_label(name: str, labelled: tuple[CliRun, list[dict]], dataset: Path) -> None:
    run, records = labelled
    path = dataset / "cases" / name
    record = _by_name(records, dataset / "cases")[name]
    _check_record(BY_NAME[name], record)
    if "error" in record:
        assert set(record) == {"path", "error"}
        # label reports through its progress reporter, as "warning: PATH: reason".
        assert _reported_lines(run, path, "warning: ") == [f"warning: {path}: {record['error']}"]
    else:
        assert record["model"] and not _reported_lines(run, path, "warning: ")


@pytest.mark.parametrize("name", NAMES)
def test_eval(name: str, evaluated: tuple[CliRun, dict], dataset: Path) -> None:
    run, report = evaluated
    path = dataset / "cases" / name
    failed = {f["path"]: f["error"] for f in report["failed"]}
    case = BY_NAME[name]
    if str(path) in failed:
        assert case.expect in (ERROR, EITHER), f"{name} should decode: {failed[str(path)]}"
        _check_reason(case, failed[str(path)])
        assert _reported_lines(run, path, "xmodal: ") == [f"xmodal: {path}: {failed[str(path)]}"]
    else:
        assert case.expect in (OK, EITHER), f"{name} must be an error"
        assert not _reported_lines(run, path, "xmodal: ")


@pytest.mark.parametrize("name", NAMES)
def test_train_skips_bad_files(name: str, trained: tuple[FitResult, RecordingReporter],
                               dataset: Path) -> None:
    result, reporter = trained
    path = dataset / "cases" / name
    skipped = [s for s in result.skipped_files if s.startswith(f"{path}: ")]
    case = BY_NAME[name]
    if skipped:
        assert case.expect in (ERROR, EITHER), f"{name} should train: {skipped}"
        assert len(skipped) == 1
        _check_reason(case, skipped[0][len(f"{path}: "):])
        assert f"skipped {skipped[0]}" in reporter.warnings
    else:
        assert case.expect in (OK, EITHER), f"{name} must be skipped"


@pytest.mark.parametrize("name", NAMES)
def test_every_command_agrees(name: str, predicted: tuple[CliRun, list[dict]],
                              labelled: tuple[CliRun, list[dict]], evaluated: tuple[CliRun, dict],
                              trained: tuple[FitResult, RecordingReporter], dataset: Path) -> None:
    """Same file, same verdict and the same reason, whichever command decoded it."""
    path = dataset / "cases" / name
    predict_record = _by_name(predicted[1], dataset / "cases")[name]
    label_record = _by_name(labelled[1], dataset / "cases")[name]
    eval_failed = {f["path"]: f["error"] for f in evaluated[1]["failed"]}
    train_failed = {s.split(": ", 1)[0]: s.split(": ", 1)[1] for s in trained[0].skipped_files}
    reasons = [predict_record.get("error"), label_record.get("error"),
               eval_failed.get(str(path)), train_failed.get(str(path))]
    assert len(set(reasons)) == 1, reasons


# -- whole runs ---------------------------------------------------------------------------------------


def _only_bad_files_failed(failed_paths: list[str]) -> None:
    names = {Path(p).name for p in failed_paths}
    assert {c.name for c in CASES if c.expect == ERROR} <= names
    assert not names & {c.name for c in CASES if c.expect == OK}


def test_predict_run(predicted: tuple[CliRun, list[dict]], dataset: Path) -> None:
    run, records = predicted
    assert run.code == 1
    assert "Traceback" not in run.err
    paths = [r["path"] for r in records]
    assert sorted(_by_name(records, dataset / "cases")) == sorted(NAMES)  # each file once
    assert len(paths) == len(set(paths)) == len(CASES)
    _only_bad_files_failed([r["path"] for r in records if "error" in r])


def test_label_run(labelled: tuple[CliRun, list[dict]], dataset: Path) -> None:
    run, records = labelled
    assert run.code == 1
    assert "Traceback" not in run.err
    assert sorted(_by_name(records, dataset / "cases")) == sorted(NAMES)
    failed = sum("error" in r for r in records)
    assert f"labelled {len(records) - failed}, skipped 0" in run.err
    assert f"failed {failed};" in run.err


def test_eval_run(evaluated: tuple[CliRun, dict]) -> None:
    run, report = evaluated
    assert run.code == 1
    assert "Traceback" not in run.err
    assert report["files"] == len(CASES) + 2  # every file counted once; folders are not files
    _only_bad_files_failed([f["path"] for f in report["failed"]])
    assert f"({len(report['failed'])} failed to decode)" in run.out
    assert report["video_level"]["count"] == report["files"] - len(report["failed"])


def test_training_warns_and_counts(trained: tuple[FitResult, RecordingReporter]) -> None:
    result, reporter = trained
    assert result.history and result.history[0]["epoch"] == 1
    _only_bad_files_failed([s.split(": ", 1)[0] for s in result.skipped_files])
    assert f"{len(result.skipped_files)} file(s) could not be decoded and were skipped" \
        in reporter.warnings


def test_a_folder_named_like_a_video_is_reported_when_named(model: Path, dataset: Path) -> None:
    """Found in a walk it is a folder (walked, empty); named on the command line it is an error."""
    folder = dataset / "cases" / "folder.mp4"
    run = run_cli("predict", str(model), str(folder), "--format", "json")
    assert run.code == 1
    assert [json.loads(line) for line in run.out.splitlines()] == [
        {"path": str(folder), "error": "is a directory, not a media file"}]
    assert run.err_lines == [f"xmodal: {folder}: is a directory, not a media file"]


def test_unreadable_files(model: Path, tmp_path: Path) -> None:
    image, video = tmp_path / "locked.jpg", tmp_path / "locked.mp4"
    mf.unreadable(_good_image(image))
    mf.unreadable(_good_video(video))
    if os.access(image, os.R_OK):
        pytest.skip("this process reads chmod 000 files (root, with CAP_DAC_OVERRIDE); "
                    "test_unreadable_files_simulated covers it")
    run = run_cli("predict", str(model), str(image), str(video), "--format", "json")
    assert run.code == 1 and "Traceback" not in run.err
    records = [json.loads(line) for line in run.out.splitlines()]
    assert records == [{"path": str(image), "error": "permission denied"},
                       {"path": str(video), "error": "permission denied"}]


def test_unreadable_files_simulated(model: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """As root, make opening the files fail as it would for anyone else (workers=0: in-process)."""
    image, video = _good_image(tmp_path / "locked.jpg"), _good_video(tmp_path / "locked.mp4")
    real_open, real_access = builtins.open, os.access

    def open_(file: object, *args: object, **kwargs: object) -> object:
        if str(file) == str(image):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    def access(path: object, mode: int, *args: object, **kwargs: object) -> bool:
        return False if str(path) == str(video) else real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(os, "access", access)
    run = run_cli("predict", str(model), str(image), str(video), "--format", "json",
                  "--workers", "0")
    assert run.code == 1 and "Traceback" not in run.err
    records = [json.loads(line) for line in run.out.splitlines()]
    assert records == [{"path": str(image), "error": "permission denied"},
                       {"path": str(video), "error": "permission denied"}]


# -- nothing but bad files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def all_bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("all_bad") / "data"
    bad = [c for c in CASES if c.expect == ERROR]
    for i, case in enumerate(bad):
        folder = root / CLASSES[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        case.make(folder / case.name)
    return root


def test_training_on_only_bad_files_stops_with_one_clear_error(all_bad: Path, tmp_path: Path) -> None:
    run = run_cli("train", "--data", str(all_bad), "--modality", "mixed", "--frames", "2",
                  "--epochs", "1", "--batch-size", "4", "--workers", "0", "--val-split", "0",
                  "--input-size", "64", "--out", str(tmp_path / "run"), "--quiet")
    assert run.code == 2 and "Traceback" not in run.err
    errors = [line for line in run.err_lines if line.startswith("xmodal: error: ")]
    assert len(errors) == 1
    assert re.fullmatch(rf"xmodal: error: {re.escape(str(all_bad))}: no training file could be "
                        rf"decoded \({len(list(all_bad.rglob('*.*')))} skipped; first: .+\)",
                        errors[0]), errors[0]
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_eval_on_only_bad_files_stops_with_one_clear_error(model: Path, all_bad: Path) -> None:
    run = run_cli("eval", str(model), "--data", str(all_bad), "--quiet")
    assert run.code == 2 and "Traceback" not in run.err
    count = len(list(all_bad.rglob("*.*")))
    assert run.err_lines[-1:] == [f"xmodal: error: {all_bad}: no file could be decoded "
                                  f"({count} failed)"]


def test_label_and_predict_on_only_bad_files_record_every_one(model: Path, all_bad: Path,
                                                              tmp_path: Path) -> None:
    count = len(list(all_bad.rglob("*.*")))
    run = run_cli("label", str(all_bad), "--model", str(model), "--out", str(tmp_path / "l.jsonl"),
                  "--quiet")
    assert run.code == 1 and "Traceback" not in run.err
    assert f"labelled 0, skipped 0 (already in {tmp_path / 'l.jsonl'}), failed {count}" in run.err
    records = [json.loads(x) for x in (tmp_path / "l.jsonl").read_text("utf-8").splitlines()]
    assert len(records) == count and all(set(r) == {"path", "error"} for r in records)
    run = run_cli("predict", str(model), str(all_bad), "--format", "json")
    assert run.code == 1 and "Traceback" not in run.err
    assert sum(line.startswith("xmodal: ") for line in run.err_lines) == count


# -- symlink loops ---------------------------------------------------------------------------------


def test_a_link_back_to_the_dataset_root_does_not_relabel_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_image(root / "a" / "x.jpg")
    write_image(root / "b" / "y.jpg")
    os.symlink("..", root / "a" / "up", target_is_directory=True)
    samples, classes = scan_folder(root)
    by_file = {}
    for sample in samples:
        by_file.setdefault(sample.path.resolve(), set()).add(classes[sample.label])
    assert by_file == {(root / "a" / "x.jpg").resolve(): {"a"}, (root / "b" / "y.jpg").resolve(): {"b"}}


# -- CSV datasets: property tests -------------------------------------------------------------------

CSV_FILES = ["plain.jpg", "with space.png", "comma, inside.mp4", 'quote "q".avi', "ünï 東京.jpg",
             "semi;colon.mkv", "UPPER.JPG", "sub/nested dir/deep.gif", "it's.webm"]
HEADERS = [None, ("path", "label"), ("File", "Class"), ("video", "category")]
QUOTING = [csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]
BLANKS = ["", "   ", ",", " , ", "\t"]

# Labels as people write them: any printable text, no surrounding blanks (those are stripped).
labels = st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1,
                 max_size=8).map(str.strip).filter(bool)
rows = st.lists(st.tuples(st.sampled_from(CSV_FILES), labels), min_size=1, max_size=8)


@pytest.fixture(scope="module")
def csv_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("csv")
    for name in CSV_FILES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")  # read_csv lists files; it does not decode them
    return folder


@st.composite
def csv_texts(draw: st.DrawFn, data_rows: list[tuple[str, str]], folder: Path
              ) -> tuple[str, list[int]]:
    """``data_rows`` written with random quoting, header, BOM, blank lines, line ends and
    absolute or relative paths; also the line number of each data row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=draw(st.sampled_from(QUOTING)), lineterminator="\n")
    header = draw(st.sampled_from(HEADERS))
    if header:
        writer.writerow(header)
    for path, label in data_rows:
        writer.writerow([str(folder / path) if draw(st.booleans()) else path, label])
    written = buffer.getvalue().splitlines()
    lines, line_numbers = written[:1] if header else [], []
    for row in written[1:] if header else written:
        lines += [draw(st.sampled_from(BLANKS)) for _ in range(draw(st.integers(0, 2)))]
        lines.append(row)
        line_numbers.append(len(lines))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    return ("\ufeff" if draw(st.booleans()) else "") + text, line_numbers


@settings(max_examples=30, deadline=None)
@given(data=st.data(), data_rows=rows, modality=st.sampled_from(["mixed", "image", "video"]))
def test_csv_rows_parse_back_to_what_was_written(csv_dir: Path, data: st.DataObject,
                                                 data_rows: list[tuple[str, str]],
                                                 modality: str) -> None:
    text, _ = data.draw(csv_texts(data_rows, csv_dir))
    path = csv_dir / "list.csv"
    path.write_bytes(text.encode("utf-8"))
    kept = [(f, lbl) for f, lbl in data_rows if modality == "mixed" or kind_of(f) == modality]
    if not kept:
        with pytest.raises(DatasetError, match="files listed"):
            read_csv(path, modality)
        return
    samples, classes = read_csv(path, modality)
    assert classes == sorted({lbl for _, lbl in kept})
    assert [(s.path, classes[s.label], s.kind) for s in samples] == [
        (csv_dir / f, lbl, kind_of(f)) for f, lbl in kept]


@settings(max_examples=30, deadline=None)
@given(data=st.data(), data_rows=rows, extra=st.lists(labels, max_size=3))
def test_csv_labels_outside_the_class_list_name_their_line(csv_dir: Path, data: st.DataObject,
                                                           data_rows: list[tuple[str, str]],
                                                           extra: list[str]) -> None:
    used = sorted({lbl for _, lbl in data_rows})
    known = data.draw(st.lists(st.sampled_from(used), unique=True)) + extra
    classes = data.draw(st.permutations(list(dict.fromkeys(known))))
    text, line_numbers = data.draw(csv_texts(data_rows, csv_dir))
    path = csv_dir / "list.csv"
    path.write_bytes(text.encode("utf-8"))
    unknown = [(n, lbl) for n, (_, lbl) in zip(line_numbers, data_rows, strict=True)
               if lbl not in classes]
    if unknown:
        with pytest.raises(DatasetError) as info:
            read_csv(path, classes=classes)
        line, label = unknown[0]
        assert info.value.path == f"{path}:{line}"
        assert info.value.reason.startswith(f"label {label!r} is not one of the classes")
        return
    samples, names = read_csv(path, classes=classes)
    assert names == classes
    assert [(s.path, names[s.label]) for s in samples] == [(csv_dir / f, lbl) for f, lbl in data_rows]


def test_csv_space_after_the_comma_before_a_quoted_field(csv_dir: Path) -> None:
    path = csv_dir / "spaced.csv"
    path.write_text('"comma, inside.mp4", "cat"\nplain.jpg, dog\n', encoding="utf-8")
    samples, classes = read_csv(path)
    assert classes == ["cat", "dog"]
    assert [s.path for s in samples] == [csv_dir / "comma, inside.mp4", csv_dir / "plain.jpg"]


def test_csv_unquoted_comma_in_a_path_is_a_clear_error(csv_dir: Path) -> None:
    path = csv_dir / "unquoted.csv"
    path.write_text("plain.jpg,cat\ncomma, inside.mp4,dog\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="expected 2 columns.*quote paths that contain commas"):
        read_csv(path)
