"""Multi-label: CSV input, BCE on pooled logits, tuned thresholds, mAP and example-based F1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.cli_harness import CliRun, run_cli
from tests.utils import write_image
from xmodal.config import load_config
from xmodal.data.datasets import read_csv
from xmodal.engine.multilabel import (
    average_precision,
    example_f1,
    labels_above,
    targets_tensor,
    tune_thresholds,
)
from xmodal.errors import ConfigError, DatasetError


def test_average_precision_equals_scikit_learn() -> None:
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        truth = rng.random(40) < 0.3
        truth[0] = True
        scores = np.round(rng.random(40) + truth * 0.3, 1)  # rounded: ties, as real scores have
        assert average_precision(scores, truth) == pytest.approx(average_precision_score(truth, scores))
    assert average_precision(np.array([0.2, 0.9]), np.array([False, False])) is None


def test_example_f1_known_answer() -> None:
    predicted = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]], bool)
    truth = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], bool)
    # 2*1/(2+1), 0, 1, and 1 for an empty prediction of an empty truth
    assert example_f1(predicted, truth) == pytest.approx((2 / 3 + 0 + 1 + 1) / 4)


def test_thresholds_maximise_each_classs_f1() -> None:
    scores = np.array([[0.9, 0.2], [0.6, 0.3], [0.4, 0.35], [0.1, 0.05]])
    truth = np.array([[1, 0], [1, 0], [0, 0], [0, 0]], bool)
    # Class 0: keeping >= 0.6 gets both positives and nothing else; halfway to 0.4 is 0.5.
    # Class 1 has no positives in this split: it keeps 0.5.
    assert tune_thresholds(scores, truth) == [0.5, 0.5]
    truth[2, 1] = True
    assert tune_thresholds(scores, truth)[1] == pytest.approx((0.35 + 0.3) / 2)
    assert labels_above([0.7, 0.9, 0.1], ["a", "b", "c"], np.array([0.5, 0.5, 0.5])) == ["b", "a"]


def test_targets_are_class_indices_or_multi_hot_rows() -> None:
    assert targets_tensor([2, 0], None).tolist() == [2, 0]
    assert targets_tensor([(0, 2), (1,)], 3).tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]


def test_csv_with_several_labels_per_row(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg"):
        write_image(tmp_path / name)
    (tmp_path / "list.csv").write_text("path,label\na.jpg,dog|running\nb.jpg, cat \n")
    samples, classes = read_csv(tmp_path / "list.csv", multi_label=True)
    assert classes == ["cat", "dog", "running"]
    assert [s.label for s in samples] == [(1, 2), (0,)]
    single, names = read_csv(tmp_path / "list.csv")  # the single-label path is unchanged
    assert names == ["cat", "dog|running"] and [s.label for s in single] == [1, 0]
    (tmp_path / "bad.csv").write_text("a.jpg,dog|\nb.jpg,|\n")
    with pytest.raises(DatasetError, match="bad.csv:2: no label"):
        read_csv(tmp_path / "bad.csv", multi_label=True)


def test_multi_label_needs_a_csv_and_no_mixup(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs --csv"):
        load_config(None, data=str(tmp_path), multi_label=True)
    with pytest.raises(ConfigError, match="mixup"):
        load_config(None, csv="x.csv", multi_label=True, mixup=0.8)


# --------------------------------------------------------------------------- a real tiny set

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def _pair(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """Two photos in one square picture, one above the other: each a random 2:1 strip of it
    resized to ``size`` x ``size / 2`` (a square, so the centre crop keeps both)."""
    from PIL import Image

    halves = []
    for photo in (a, b):
        h, w = photo.shape[:2]
        width = int(min(w, 2 * h) * rng.uniform(0.7, 0.95))
        top, left = rng.integers(0, h - width // 2 + 1), rng.integers(0, w - width + 1)
        strip = photo[top:top + width // 2, left:left + width]
        halves.append(np.asarray(Image.fromarray(strip).resize((size, size // 2))))
    return np.concatenate(halves, axis=0)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Photos shown two at a time (scikit-image's astronaut, cat, coffee and rocket), labelled
    with both: every ordered pair 3 times for training, once more (new crops) for testing."""
    import skimage.data

    root = tmp_path_factory.mktemp("pairs")
    photos = {name: getattr(skimage.data, name)() for name in PHOTOS}
    rng = np.random.default_rng(0)
    lines = {"train": ["path,label"], "test": ["path,label"]}
    for split, copies in (("train", 3), ("test", 1)):
        for a in PHOTOS:
            for b in PHOTOS:
                for k in range(copies if a != b else 0):
                    name = f"{split}/{a}-{b}-{k}.png"
                    write_image(root / name, _pair(photos[a], photos[b], rng))
                    lines[split].append(f"{name},{a}|{b}")
    for split, rows in lines.items():
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def trained(pairs: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run = tmp_path_factory.mktemp("mlrun") / "run"
    with pytest.MonkeyPatch.context() as patch:  # the feature cache of the linear probe
        patch.setenv("XMODAL_CACHE_DIR", str(run.parent / "cache"))
        result = _train(pairs, run)
    assert result.code == 0, result.err
    return run, result.out


def _train(pairs: Path, run: Path) -> CliRun:
    return run_cli("train", "--csv", str(pairs / "train.csv"), "--multi-label", "--modality", "image",
                   "--finetune", "linear", "--epochs", "20", "--lr", "0.003", "--batch-size", "8",
                   "--input-size", "96", "--augment", "none", "--workers", "0",
                   "--out", str(run), "--quiet")


def test_photos_shown_two_at_a_time_recover_both_labels(trained: tuple[Path, str], pairs: Path) -> None:
    run, out = trained
    assert "best validation F1 (example-based)" in out
    meta = json.loads((run / "model.json").read_text())
    assert meta["multi_label"] is True and len(meta["thresholds"]) == 4
    assert "temperature" not in meta  # thresholds, not a softmax temperature
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert "val_f1" in metrics[-1] and "val_acc" not in metrics[-1]
    shown = f"astronaut {meta['thresholds'][0]:.3f}"
    assert shown in run_cli("info", str(run)).out
    result = run_cli("predict", str(run), str(pairs / "test"), "--format", "json", "--workers", "0")
    assert result.code == 0, result.err
    records = [json.loads(line) for line in result.out.splitlines()]
    assert len(records) == 12
    for r in records:
        a, b = Path(r["path"]).stem.split("-")[:2]
        assert sorted(r["labels"]) == sorted([a, b]), r
        assert {t["label"] for t in r["top"][:2]} == {a, b}
        assert r["score"] == r["top"][0]["score"] and r["label"] == r["top"][0]["label"]


def test_eval_reports_map_per_class_ap_and_example_f1(trained: tuple[Path, str], pairs: Path,
                                                     tmp_path: Path) -> None:
    run, _ = trained
    result = run_cli("eval", str(run), "--csv", str(pairs / "test.csv"), "--out", str(tmp_path),
                     "--workers", "0", "--quiet")
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["map"] == 1.0 and report["example_f1"] == 1.0
    assert set(report["per_class"]) == set(PHOTOS)
    assert all(m["ap"] == 1.0 and m["support"] == 6 for m in report["per_class"].values())
    assert "mAP 1.0000  example-based F1 1.0000" in result.out
    assert not (tmp_path / "confusion_matrix.png").exists()


def test_label_writes_the_labels_in_jsonl_and_csv(trained: tuple[Path, str], pairs: Path,
                                                 tmp_path: Path) -> None:
    import csv
    import io

    run, _ = trained
    out = tmp_path / "labels.csv"
    result = run_cli("label", str(pairs / "test"), "--model", str(run), "--out", str(out),
                     "--workers", "0", "--quiet")
    assert result.code == 0, result.err
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 12
    for row in rows:
        a, b = Path(row["path"]).stem.split("-")[:2]
        assert sorted(row["labels"].split("|")) == sorted([a, b])


def test_the_loss_is_binary_cross_entropy_on_pooled_logits() -> None:
    """Temporal pooling happens on the logits, before the sigmoid: a clip of two frames that
    each show one class scores both from the mean logit."""
    from xmodal.engine.calibration import clip_scores

    frame_logits = torch.tensor([[[4.0, -4.0], [-4.0, 4.0]]])  # (B=1, T=2, K=2)
    pooled = frame_logits.mean(1)
    assert clip_scores(pooled, {"multi_label": True}).tolist() == [[0.5, 0.5]]
    assert torch.nn.functional.binary_cross_entropy_with_logits(
        pooled, torch.tensor([[1.0, 1.0]])).item() == pytest.approx(np.log(2))
