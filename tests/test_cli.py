from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.utils import write_image, write_video
from xmodal.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["train", "predict", "info"])
def test_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0
    assert "Usage: xmodal " + command in out
    assert "xmodal " + command in out.split("Options")[0]  # the help shows an example


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and "xmodal" in out


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code != 0
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


def test_train_missing_data_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    code, _, err = run_cli(capsys, "train", "--data", str(missing), "--out", str(tmp_path / "r"))
    _one_line_error(code, err, str(missing))


def test_train_refuses_an_out_that_holds_a_run(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("epochs: 1\n")
    (run / "model.json").write_text("{}")
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    code, _, err = run_cli(capsys, "train", "--data", str(tmp_path), "--out", str(run))
    _one_line_error(code, err, str(run), "--resume", "--overwrite")
    assert code == 2
    assert (run / "metrics.jsonl").read_text() == '{"epoch": 1}\n'  # nothing touched
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--overwrite")
    assert code == 2 and "--overwrite" in err and "Traceback" not in err


def test_train_empty_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "train", "--data", str(tmp_path / "empty"), "--out",
                           str(tmp_path / "r"))
    _one_line_error(code, err, "empty")


def test_train_class_folder_without_usable_files(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    write_video(tmp_path / "d" / "a" / "x.mp4", 8)
    write_video(tmp_path / "d" / "a" / "y.mp4", 8)
    (tmp_path / "d" / "b").mkdir()
    (tmp_path / "d" / "b" / "notes.txt").write_text("hello")
    code, _, err = run_cli(capsys, "train", "--data", str(tmp_path / "d"), "--modality", "video",
                           "--out", str(tmp_path / "r"))
    _one_line_error(code, err, str(tmp_path / "d" / "b"))


def test_train_unknown_backbone(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for cls in ("a", "b"):
        for i in range(2):
            write_image(tmp_path / "d" / cls / f"{i}.png")
    code, _, err = run_cli(capsys, "train", "--data", str(tmp_path / "d"), "--modality", "image",
                           "--backbone", "resnet5", "--out", str(tmp_path / "r"))
    _one_line_error(code, err, "resnet5", "resnet50")


def test_train_bad_option_value(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "train", "--modality", "audio", "--out", str(tmp_path))
    assert code == 2 and "audio" in err and "Traceback" not in err


@pytest.mark.parametrize("args", [("label", ".", "--model", "m", "--out", "o.jsonl", "--timeout", "-5"),
                                  ("label", ".", "--model", "m", "--out", "o.jsonl", "--timeout", "0"),
                                  ("label", ".", "--model", "m", "--out", "o.jsonl", "--timeout", "nan"),
                                  ("check", ".", "--timeout", "inf"),
                                  ("label", ".", "--model", "m", "--out", "o.jsonl", "--top-k", "0"),
                                  ("predict", "m", "x.jpg", "--top-k", "-1"),
                                  ("predict", "m", "x.jpg", "--still-scale", "0"),
                                  ("eval", "m", "--data", ".", "--still-scale", "1.5")])
def test_a_non_positive_timeout_or_top_k_is_refused(capsys: pytest.CaptureFixture[str],
                                                    args: tuple[str, ...]) -> None:
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and args[-2] in err and "Traceback" not in err


def test_train_bad_config_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochz: 3\n")
    code, _, err = run_cli(capsys, "train", "--config", str(cfg), "--out", str(tmp_path / "r"))
    _one_line_error(code, err, "epochz")


def test_predict_unknown_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    img = write_image(tmp_path / "a.png")
    code, _, err = run_cli(capsys, "predict", "efficientnet_lite", str(img))
    _one_line_error(code, err, "efficientnet_lite", "efficientnet_lite0")


def test_info_missing_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "info", str(tmp_path / "run"))
    _one_line_error(code, err, str(tmp_path / "run"))


def test_predict_imagenet_encoder_mixed_good_and_bad(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    """Bad files are reported one line each; every good file is still predicted."""
    from skimage.data import chelsea

    cat = write_image(tmp_path / "cat photo.jpg", chelsea())
    clip = write_video(tmp_path / "cat clip.mp4", frames=[chelsea()[:, :448]] * 6,
                       size=(448, 300))
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    missing = tmp_path / "missing.jpg"
    code, out, err = run_cli(capsys, "predict", "efficientnet_lite0", str(cat), str(bad),
                             str(clip), str(missing), "--format", "json", "--top-k", "3")
    assert code == 1
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in records] == [str(cat), str(bad), str(clip), str(missing)]
    assert records[0]["top"][0]["label"] == "Egyptian cat"
    assert records[2]["top"][0]["label"] == "Egyptian cat"
    assert records[2]["frames"] == 6 and records[2]["duration_s"] == 0.24
    assert records[2]["sampled_s"] == [0.0, 0.04, 0.08, 0.12, 0.16, 0.2]  # 8 segments of 6 frames
    assert "sampled_s" not in records[0]  # a still is one frame
    assert len(records[0]["top"]) == 3
    assert "error" in records[1] and "error" in records[3]
    err_lines = err.strip().splitlines()
    assert len(err_lines) == 2 and "Traceback" not in err
    assert str(bad) in err_lines[0] and str(missing) in err_lines[1]


def test_predict_still_scale_zooms_photos_out_and_leaves_clips(capsys: pytest.CaptureFixture[str],
                                                               tmp_path: Path) -> None:
    from skimage.data import chelsea

    cat = write_image(tmp_path / "cat.jpg", chelsea())
    clip = write_video(tmp_path / "cat.mp4", frames=[chelsea()[:, :448]] * 4, size=(448, 300))
    runs = {}
    for scale in ("1", "0.5"):
        code, out, _ = run_cli(capsys, "predict", "efficientnet_lite0", str(cat), str(clip),
                               "--format", "json", "--still-scale", scale, "--workers", "0")
        assert code == 0
        runs[scale] = [json.loads(line) for line in out.splitlines()]
    assert runs["0.5"][0]["top"] != runs["1"][0]["top"]  # the photo, zoomed out, scores otherwise
    assert runs["0.5"][1]["top"] == runs["1"][1]["top"]  # the clip's frames as they come
    assert runs["0.5"][0]["top"][0]["label"] == "Egyptian cat"  # still a cat at half the size


def test_console_script_error_has_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "xmodal", "predict", str(tmp_path / "nope"),
                           str(tmp_path / "x.jpg")], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert str(tmp_path / "nope") in proc.stderr
