"""A calibrated run and a multi-label run give the same records on PyTorch and on ONNX Runtime
(a run's cached export, and an ``xmodal export`` dir): temperature, sigmoid, per-class
thresholds (``labels``), --min-score (``unknown``), eval's ECE and mAP, and embeddings."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.cli_harness import run_cli
from tests.utils import write_image, write_video

PHOTOS = ("astronaut", "chelsea", "coffee")
# The engines' readers resize frames with torch and with Pillow (equal within one grey level on
# a few pixels), which moves a score by ~1e-4; T = 0.4 multiplies logit differences by 2.5.
SCORE_TOLERANCE = 2e-3


def _photo(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def _crop(photo: np.ndarray, rng: np.random.Generator, size: int = 80) -> np.ndarray:
    """A random square crop of 60-90 % of the photo's shorter side, resized to ``size``."""
    from PIL import Image

    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(0.6, 0.9))
    top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    return np.asarray(Image.fromarray(photo[top:top + side, left:left + side]).resize((size, size)))


def _train(*args: str, run: Path) -> Path:
    result = run_cli("train", *args, "--finetune", "linear", "--epochs", "3", "--min-steps", "0",
                     "--batch-size", "4", "--input-size", "64", "--frames", "2", "--augment", "none",
                     "--workers", "0", "--val-split", "0.5", "--out", str(run), "--quiet")
    assert result.code == 0, result.err
    return run


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Per photo: class folders of crops for training, and new crops plus a short clip of
    crops for predicting."""
    root = tmp_path_factory.mktemp("engines")
    rng = np.random.default_rng(0)
    for name in PHOTOS:
        photo = _photo(name)
        for k in range(4):
            write_image(root / "train" / name / f"{k}.png", _crop(photo, rng))
        write_image(root / "test" / name / "still.png", _crop(photo, rng))
        frames = np.stack([_crop(photo, rng) for _ in range(6)])
        write_video(root / "test" / name / "clip.mp4", 6, size=(80, 80), fps=4, frames=frames)
    return root


@pytest.fixture(scope="module")
def calibrated(media: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tiny run; its fitted temperature is then set to 0.4 in model.json (a tiny split
    may have nothing to fit: every file right), which must reach both engines."""
    run = tmp_path_factory.mktemp("cal") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XMODAL_CACHE_DIR", str(run.parent / "features"))
        _train("--data", str(media / "train"), "--modality", "image", run=run)
    meta = json.loads((run / "model.json").read_text())
    assert "temperature" in meta and "calibration" in meta  # train fitted (or declined to fit) one
    (run / "model.json").write_text(json.dumps({**meta, "temperature": 0.4}, indent=2))
    return run


@pytest.fixture(scope="module")
def multi_label(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real tiny multi-label run on pictures of two photos each (one above the other), and
    the CSV of new such pictures to test on."""
    from PIL import Image

    root = tmp_path_factory.mktemp("ml")
    rng = np.random.default_rng(1)
    photos = {name: _photo(name) for name in PHOTOS}

    def pair(a: str, b: str) -> np.ndarray:
        halves = [np.asarray(Image.fromarray(_crop(photos[n], rng)).resize((80, 40))) for n in (a, b)]
        return np.concatenate(halves, axis=0)

    for split, copies in (("train", 2), ("test", 1)):
        rows = ["path,label"]
        for a in PHOTOS:
            for b in PHOTOS:
                for k in range(copies if a != b else 0):
                    path = f"{split}/{a}-{b}-{k}.png"
                    write_image(root / path, pair(a, b))
                    rows.append(f"{path},{a}|{b}")
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    run = root / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XMODAL_CACHE_DIR", str(root / "features"))
        _train("--csv", str(root / "train.csv"), "--multi-label", "--modality", "image", run=run)
    meta = json.loads((run / "model.json").read_text())
    assert meta["multi_label"] is True and len(meta["thresholds"]) == 3
    return run, root / "test.csv"


def _records(*args: str) -> list[dict[str, Any]]:
    result = run_cli("predict", *args, "--format", "json", "--workers", "0")
    assert result.code == 0, result.err
    return [json.loads(line) for line in result.out.splitlines()]


def _same_records(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    """Labels, ``labels`` and top-k classes equal; scores equal to float rounding."""
    assert [r["path"] for r in a] == [r["path"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert x["label"] == y["label"] and x.get("labels") == y.get("labels"), (x, y)
        assert [t["label"] for t in x["top"]] == [t["label"] for t in y["top"]]
        np.testing.assert_allclose([t["score"] for t in x["top"]], [t["score"] for t in y["top"]],
                                   atol=SCORE_TOLERANCE)


def test_a_calibrated_run_scores_alike_on_both_engines(calibrated: Path, media: Path,
                                                        tmp_path: Path) -> None:
    test = str(media / "test")
    torch_plain = _records(str(calibrated), test, "--engine", "torch")
    onnx_plain = _records(str(calibrated), test, "--engine", "onnx")
    pairs = [(a["score"], b["score"]) for a, b in zip(torch_plain, onnx_plain, strict=True)]
    scores = sorted(a for a, _ in pairs)
    # --min-score halfway between two neighbouring scores, at the widest such gap that puts
    # every file on the same side of it on both engines (their rounding differs slightly);
    # at least one file falls below it.
    cuts = [i for i in range(len(scores) - 1)
            if all((a < (scores[i] + scores[i + 1]) / 2) == (b < (scores[i] + scores[i + 1]) / 2)
                   for a, b in pairs)]
    assert cuts, pairs
    cut = max(cuts, key=lambda i: scores[i + 1] - scores[i])
    threshold = round((scores[cut] + scores[cut + 1]) / 2, 6)
    args = (test, "--min-score", str(threshold))
    on_torch = _records(str(calibrated), *args, "--engine", "torch")
    on_onnx = _records(str(calibrated), *args, "--engine", "onnx")
    on_auto = _records(str(calibrated), *args, "--device", "cpu")  # the default: ONNX Runtime
    unknown = [r["path"] for r in on_torch if r["label"] == "unknown"]
    assert len(unknown) == cut + 1 and all(r["score"] < threshold for r in on_torch if r["path"] in unknown)
    _same_records(on_torch, on_onnx)
    _same_records(on_torch, on_auto)
    # An export dir carries the temperature too.
    exported = tmp_path / "export"
    assert run_cli("export", str(calibrated), "--out", str(exported)).code == 0
    export_meta = json.loads((exported / "model.json").read_text())
    assert export_meta["temperature"] == 0.4 and export_meta["activation"] == "softmax"
    assert "scores:     temperature 0.4000" in run_cli("info", str(exported)).out
    _same_records(on_torch, _records(str(exported), *args))


def test_the_cached_export_follows_the_temperature(calibrated: Path, media: Path, tmp_path: Path) -> None:
    """model.json keys the cache: a new temperature is a new export, not the old graph's scores."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(calibrated, run)
    still = str(media / "test" / "coffee" / "still.png")
    before = _records(str(run), still, "--engine", "onnx")[0]
    meta = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps({**meta, "temperature": 2.0}))
    after = _records(str(run), still, "--engine", "onnx")[0]
    on_torch = _records(str(run), still, "--engine", "torch")[0]
    assert after["score"] < before["score"] - 0.05  # T 0.4 -> 2.0: a softer top score
    _same_records([on_torch], [after])


def test_a_multi_label_run_labels_alike_on_both_engines(multi_label: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    run, test_csv = multi_label
    test = str(test_csv.parent / "test")
    on_torch = _records(str(run), test, "--engine", "torch")
    on_onnx = _records(str(run), test, "--engine", "onnx")
    assert len(on_torch) == 6 and all("labels" in r for r in on_torch)
    # Sigmoids, not a softmax: the scores of a file do not sum to 1.
    assert any(abs(sum(t["score"] for t in r["top"]) - 1) > 0.05 for r in on_torch)
    _same_records(on_torch, on_onnx)
    exported = tmp_path / "export"
    assert run_cli("export", str(run), "--out", str(exported)).code == 0
    export_meta = json.loads((exported / "model.json").read_text())
    assert export_meta["activation"] == "sigmoid" and export_meta["multi_label"] is True
    assert export_meta["thresholds"] == json.loads((run / "model.json").read_text())["thresholds"]
    _same_records(on_torch, _records(str(exported), test))
    # INT8: read from the run's multi-label CSV; no top-1 "validation" (a single-label measure)
    int8 = tmp_path / "int8"
    result = run_cli("export", str(run), "--int8", "--calibration-frames", "8", "--out", str(int8))
    assert result.code == 0, result.err
    int8_meta = json.loads((int8 / "model.json").read_text())
    assert int8_meta["activation"] == "sigmoid" and "validation" not in int8_meta["quantization"]
    assert all("labels" in r for r in _records(str(int8), test))
    # adapt pseudo-labels one class per file: refused in one line
    result = run_cli("adapt", str(run), "--unlabeled", test, "--out", str(tmp_path / "adapted"))
    assert result.code != 0 and "multi-label run cannot be adapted" in result.err
    assert len(result.err_lines) == 1 and "Traceback" not in result.err
    # label: the labels column of the CSV, on both engines
    rows = {}
    for engine in ("torch", "onnx"):
        out = tmp_path / f"{engine}.csv"
        result = run_cli("label", test, "--model", str(run), "--out", str(out), "--workers", "0",
                         "--engine", engine, "--quiet")
        assert result.code == 0, result.err
        rows[engine] = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows["torch"]) == 6
    assert [(r["path"], r["label"], r["labels"]) for r in rows["torch"]] == \
        [(r["path"], r["label"], r["labels"]) for r in rows["onnx"]]
    assert [r["labels"] for r in rows["torch"]] == ["|".join(r["labels"]) for r in on_torch]


def test_eval_reports_alike_on_both_engines(calibrated: Path, media: Path,
                                            multi_label: tuple[Path, Path], tmp_path: Path) -> None:
    reports = {}
    for engine in ("torch", "onnx"):
        for name, source in (("cal", ("--data", str(media / "test"))),
                             ("ml", ("--csv", str(multi_label[1])))):
            model = calibrated if name == "cal" else multi_label[0]
            out = tmp_path / f"{name}-{engine}"
            result = run_cli("eval", str(model), *source, "--out", str(out), "--workers", "0",
                             "--engine", engine, "--min-score", "0.5", "--quiet")
            assert result.code == 0, result.err
            reports[name, engine] = json.loads((out / "report.json").read_text())
    cal_t, cal_o = reports["cal", "torch"], reports["cal", "onnx"]
    assert cal_t["video_level"] == cal_o["video_level"] and cal_t["confusion"] == cal_o["confusion"]
    assert cal_t["calibration"]["temperature"] == cal_o["calibration"]["temperature"] == 0.4
    for key in ("ece", "ece_uncalibrated"):
        assert cal_t["calibration"][key] == pytest.approx(cal_o["calibration"][key], abs=1e-3)
    assert [r["files"] for r in cal_t["coverage"]] == [r["files"] for r in cal_o["coverage"]]
    ml_t, ml_o = reports["ml", "torch"], reports["ml", "onnx"]
    assert ml_t["map"] == pytest.approx(ml_o["map"], abs=1e-4)
    assert ml_t["example_f1"] == ml_o["example_f1"]
    assert {k: v["threshold"] for k, v in ml_t["per_class"].items()} == \
        {k: v["threshold"] for k, v in ml_o["per_class"].items()}


def test_embed_from_an_export_dir_equals_the_run(calibrated: Path, media: Path, tmp_path: Path) -> None:
    exported = tmp_path / "export"
    assert run_cli("export", str(calibrated), "--out", str(exported)).code == 0
    arrays = {}
    for name, model in (("run", calibrated), ("export", exported)):
        out = tmp_path / f"{name}.npy"
        result = run_cli("embed", str(model), str(media / "test"), "--out", str(out), "--workers", "0",
                         "--quiet")
        assert result.code == 0, result.err
        arrays[name] = np.load(out)
        index = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
        assert [e["row"] for e in index] == list(range(6))
    run, export = arrays["run"], arrays["export"]
    assert run.shape == export.shape == (6, 1280)
    cosine = (run * export).sum(1) / np.linalg.norm(run, axis=1) / np.linalg.norm(export, axis=1)
    assert cosine.min() > 0.999, cosine  # the same vectors but for the two readers' resizing
    assert np.abs(export - run).max() < 0.05 * np.abs(run).max()
